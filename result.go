package stepexec

import (
	"context"
	"io"
	"sync"

	"github.com/stepexec/stepexec/image"
)

// Result is what a build made.
type Result struct {
	// ID is the image's ID as docker build prints it: "sha256:" and the
	// digest of its config.
	ID string
	// Names are the names the build gave it (BuildOptions.Tags, normalized:
	// "hello" is "localhost/hello:latest").
	Names []string
	// Exports are the outputs written (BuildOptions.Outputs), in order.
	Exports []Export
	// Image is the stored image: its config and layers (see Images).
	Image image.Image
}

// Export is one output a build wrote, or one push it made.
type Export struct {
	// Dest is the directory or archive written (BuildOptions.Outputs), or
	// the reference pushed to (--push, type=image,push=true,
	// type=registry).
	Dest string
	// Type is the output's type: oci, docker, local, tar, or registry for
	// a push.
	Type string
	// Digest is the manifest's digest ("sha256:…") of an oci output or a
	// push; empty for the other types.
	Digest string
}

// Build runs the Dockerfile, stores the image under opts.Tags, writes
// opts.Outputs and says what it made. On any failure, including
// cancellation of ctx, it leaves no snapshot, no process and no layer that
// nothing else keeps (an image, another build). Errors in the Dockerfile
// name its file and line; a failed RUN is a *StepError.
func (b *Builder) Build(ctx context.Context, opts BuildOptions) (Result, error) {
	if err := b.checkLimits(opts); err != nil {
		return Result{}, err
	}
	rec := &recorder{next: opts.Progress}
	if rec.next == nil {
		rec.next = ProgressFunc(nil)
	}
	opts.Progress = rec
	img, err := b.build(ctx, opts)
	if err != nil {
		return Result{}, err
	}
	return rec.result(img), nil
}

// recorder passes events on and keeps what becomes the Result: the
// names given and the outputs written.
type recorder struct {
	next Progress

	mu      sync.Mutex
	names   []string
	exports []Export
}

func (r *recorder) Event(e Event) {
	switch e.Kind {
	case ImageNamed:
		r.mu.Lock()
		r.names = append(r.names, e.Name)
		r.mu.Unlock()
	case OutputWritten:
		r.mu.Lock()
		r.exports = append(r.exports, Export{Dest: e.Name, Type: e.Text, Digest: e.Digest})
		r.mu.Unlock()
	case ImagePushed:
		r.mu.Lock()
		r.exports = append(r.exports, Export{Dest: e.Name, Type: "registry", Digest: e.Digest})
		r.mu.Unlock()
	}
	r.next.Event(e)
}

func (r *recorder) Output(v Vertex) io.Writer { return r.next.Output(v) }

func (r *recorder) result(img image.Image) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Result{ID: "sha256:" + img.ID, Names: r.names, Exports: r.exports, Image: img}
}

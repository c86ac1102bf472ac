package stepexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/stepexec/stepexec/dockerfile"
	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/internal/buildcontext"
	"github.com/stepexec/stepexec/internal/engine"
)

// BuildOptions says what to build and where the image goes.
type BuildOptions struct {
	// ContextDir is the build context: a directory, or "-" for a tar
	// stream (or a lone Dockerfile) read from Stdin, as `docker build -`.
	ContextDir string
	// Dockerfile is the Dockerfile's path, "-" to read it from Stdin;
	// default ContextDir/Dockerfile. It may lie outside the context.
	Dockerfile string
	// Stdin is what "-" reads.
	Stdin io.Reader
	// Target names the stage to build; default the last.
	Target string
	// BuildArgs are --build-arg values.
	BuildArgs map[string]string
	// Secrets are --secret values by id (RUN --mount=type=secret).
	Secrets map[string][]byte
	// Labels are added to the image (--label), over the Dockerfile's.
	Labels map[string]string
	// Tags name the image (docker -t); normalized like podman
	// ("hello" → "localhost/hello:latest").
	Tags []string
	// Outputs are exports made after the image is stored.
	Outputs []image.OCIOutput
	// Parallel bounds how many independent stages build at once; <= 0 is
	// the number of CPUs.
	Parallel int
	// NoCache rebuilds every step instead of reusing the build cache (the
	// results are still cached); NoCacheFilter does so for the named
	// stages only (docker build --no-cache, --no-cache-filter).
	NoCache       bool
	NoCacheFilter []string
	// Network is the network mode of RUN steps without a --network of
	// their own (docker build --network): "" or "default" (private when a
	// user-mode NAT helper works here, else host), "none", "host" or
	// "private".
	Network string
	// Progress receives events and step output; nil discards them. It is
	// called from concurrent stages.
	Progress Progress
}

// StepError is a build step that failed: a RUN that exited non-zero, or an
// instruction the builder could not carry out.
type StepError = engine.StepError

// Build runs the Dockerfile and stores the image under opts.Tags. On any
// failure, including cancellation of ctx, it leaves no snapshot, no
// process and no layer that nothing else keeps (an image, another build).
func (b *Builder) Build(ctx context.Context, opts BuildOptions) (img image.Image, err error) {
	tmp, err := b.store.ScratchDir()
	if err != nil {
		return image.Image{}, err
	}
	bctx, err := buildcontext.Open(ctx, opts.ContextDir, tmp, buildcontext.Options{DockerfilePath: opts.Dockerfile, Stdin: opts.Stdin})
	if err != nil {
		return image.Image{}, err
	}
	defer bctx.Close()
	df := bctx.Dockerfile()
	graph, err := dockerfile.Parse(bytes.NewReader(df.Data), df.Name, dockerfile.ParseOptions{Target: opts.Target, BuildArgs: opts.BuildArgs})
	if err != nil {
		return image.Image{}, err
	}
	names, err := normalizeTags(opts.Tags)
	if err != nil {
		return image.Image{}, err
	}
	for _, out := range opts.Outputs {
		if err := image.CheckOutput(out); err != nil {
			return image.Image{}, err
		}
	}
	network, err := b.buildNetwork(opts.Network)
	if err != nil {
		return image.Image{}, err
	}
	progress := opts.Progress
	if progress == nil {
		progress = engine.DiscardProgress{}
	}
	// The lease holds the images the build reads and the layers it makes
	// until the image, and its exports, are done; if the build fails, its
	// release deletes the layers nothing else keeps.
	lease, err := b.store.NewLease()
	if err != nil {
		return image.Image{}, err
	}
	defer func() {
		_, rerr := lease.Release()
		if err != nil && rerr != nil {
			err = errors.Join(err, fmt.Errorf("deleting the failed build's layers: %w", rerr))
		}
		// After a success, a layer that failed to go waits for `prune`.
	}()
	deps, err := b.engineDeps(lease)
	if err != nil {
		return image.Image{}, err
	}
	req := engine.Request{Graph: graph, Context: contextSource{bctx}, Secrets: opts.Secrets,
		Parallel: opts.Parallel, Progress: progress, NoCache: opts.NoCache, NoCacheFilter: opts.NoCacheFilter}
	network.apply(&req)
	res, err := engine.Solve(ctx, req, deps)
	if err != nil {
		return image.Image{}, err
	}
	img, err = b.storeImage(res.State, opts.Labels, names, progress)
	if err != nil {
		return image.Image{}, err
	}
	return img, b.export(ctx, img, names, opts.Outputs, progress)
}

// storeImage writes the target's image and names it.
func (b *Builder) storeImage(st engine.State, labels map[string]string, names []string, progress Progress) (image.Image, error) {
	cfg := st.Image()
	if len(labels) > 0 && cfg.Config.Labels == nil {
		cfg.Config.Labels = map[string]string{}
	}
	for k, v := range labels {
		cfg.Config.Labels[k] = v
	}
	// A build that made (or took from the cache) any layer is as old as its
	// last one: rebuilt from the cache it is the same image, same ID.
	created := time.Now().UTC()
	if strings.HasPrefix(string(st.Key()), "sha256:") && !st.Stamp().IsZero() {
		created = st.Stamp()
	}
	cfg.Created = &created
	img, err := b.images.Put(cfg, st.Layers(), names)
	if err != nil {
		return image.Image{}, err
	}
	progress.Event(Event{Kind: ImageWritten, Digest: "sha256:" + img.ID})
	for _, n := range names {
		progress.Event(Event{Kind: ImageNamed, Name: n})
	}
	return img, nil
}

// export writes the image to each output.
func (b *Builder) export(ctx context.Context, img image.Image, names []string, outputs []image.OCIOutput, progress Progress) error {
	if len(outputs) == 0 {
		return nil
	}
	layers, err := b.images.Layers(img)
	if err != nil {
		return err
	}
	for _, out := range outputs {
		if out.Name == "" && len(names) > 0 {
			out.Name = names[0]
		}
		if err := image.WriteOCI(ctx, img, layers, b.store, out); err != nil {
			return err
		}
		progress.Event(Event{Kind: OutputWritten, Name: out.Dest})
	}
	return nil
}

func normalizeTags(tags []string) ([]string, error) {
	names := make([]string, 0, len(tags))
	for _, t := range tags {
		n, err := image.Normalize(t)
		if err != nil {
			return nil, fmt.Errorf("-t %s: %w", t, err)
		}
		names = append(names, n)
	}
	return names, nil
}

// resolvedBase adapts an image of the store to the engine.
func resolvedBase(img image.Image, name string, layers []image.Layer) engine.Base {
	return engine.Base{Name: name, ID: img.ID, Config: img.Config, Layers: layers}
}

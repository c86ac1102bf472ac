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
	"github.com/stepexec/stepexec/internal/registry"
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
	Outputs []Output
	// Push sends the image to every name of Tags (docker build --push).
	Push bool
	// Pull says when the images the Dockerfile names are pulled (default
	// PullMissing).
	Pull PullPolicy
	// Registry configures pulls and pushes.
	Registry RegistryOptions
	// Parallel bounds how many independent stages build at once; <= 0 is
	// the number of CPUs.
	Parallel int
	// NoCache rebuilds every step instead of reusing the build cache (the
	// results are still cached); NoCacheFilter does so for the named
	// stages only (docker build --no-cache, --no-cache-filter).
	NoCache       bool
	NoCacheFilter []string
	// Memory caps each RUN step's memory, in bytes, with as much again of
	// swap where the kernel accounts it (docker build --memory); PidsLimit
	// caps its processes and threads (--pids-limit). 0 is no limit. They
	// need a cgroup stepexec may manage: as root, or rootless on cgroup v2
	// with the controllers delegated to the user; elsewhere Build refuses
	// them before it starts, saying why.
	Memory    int64
	PidsLimit int64
	// Network is the network mode of RUN steps without a --network of
	// their own (docker build --network): "" or "default" (private when a
	// user-mode NAT helper works here, else host), "none", "host" or
	// "private".
	Network string
	// Progress receives events and step output; nil discards them. It is
	// called from concurrent stages (see ProgressFunc for a callback).
	Progress Progress
}

// StepError is a build step that failed: a RUN that exited non-zero, or an
// instruction the builder could not carry out.
type StepError = engine.StepError

// build runs the Dockerfile and stores the image under opts.Tags (see
// Build, which reports what it made).
func (b *Builder) build(ctx context.Context, opts BuildOptions) (img image.Image, err error) {
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
	if err := checkOutputs(opts, names); err != nil {
		return image.Image{}, err
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
	deps, err := b.engineDeps(lease, basePuller{b: b, policy: opts.Pull, opts: opts.Registry, progress: progress})
	if err != nil {
		return image.Image{}, err
	}
	req := engine.Request{Graph: graph, Context: contextSource{bctx}, Secrets: opts.Secrets,
		Parallel: opts.Parallel, Progress: progress, NoCache: opts.NoCache, NoCacheFilter: opts.NoCacheFilter,
		Limits: opts.limits()}
	network.apply(&req)
	res, err := engine.Solve(ctx, req, deps)
	if err != nil {
		return image.Image{}, err
	}
	img, err = b.storeImage(res.State, opts.Labels, names, progress)
	if err != nil {
		return image.Image{}, err
	}
	return img, b.export(ctx, img, names, opts, lease, progress)
}

// checkOutputs checks every output, and that --push has names to push
// to, before the build starts.
func checkOutputs(opts BuildOptions, names []string) error {
	for _, out := range opts.Outputs {
		if err := checkOutput(out); err != nil {
			return err
		}
	}
	if !opts.Push {
		return nil
	}
	if len(names) == 0 {
		return fmt.Errorf("--push needs a name to push to: -t registry.example.com/app")
	}
	for _, n := range names {
		if _, err := registry.ParseDestination(n); err != nil {
			return fmt.Errorf("--push: %w", err)
		}
	}
	return nil
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

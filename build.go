package stepexec

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/stepexec/stepexec/dockerfile"
	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/internal/safefile"
	"github.com/stepexec/stepexec/rootfs"
	"github.com/stepexec/stepexec/runtime"
	"github.com/stepexec/stepexec/snapshot"
)

// BuildOptions says what to build and where the image goes.
type BuildOptions struct {
	// ContextDir is the build context. Only the Dockerfile is read from it
	// until COPY/ADD are supported.
	ContextDir string
	// Dockerfile is the Dockerfile's path; default ContextDir/Dockerfile.
	Dockerfile string
	// Target names the stage to build; default the last.
	Target string
	// Tags name the image (docker -t); normalized like podman
	// ("hello" → "localhost/hello:latest").
	Tags []string
	// Outputs are exports made after the image is stored.
	Outputs []image.OCIOutput
	// Progress receives events and step output; nil discards them.
	Progress Progress
}

// defaultPath is the PATH docker gives a step whose image sets none.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// StepError is a build step that failed: a RUN that exited non-zero, or an
// instruction the builder could not carry out.
type StepError struct {
	Location dockerfile.Location
	Text     string // the instruction as written
	ExitCode int    // the RUN's exit code; 0 when the step failed otherwise
	Err      error  // the cause, when not an exit code
}

func (e *StepError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Location, e.Text, e.Err)
	}
	return fmt.Sprintf("%s: %s: exit code %d", e.Location, e.Text, e.ExitCode)
}

func (e *StepError) Unwrap() error { return e.Err }

// Build runs the Dockerfile and stores the image under opts.Tags. On any
// failure, including cancellation of ctx, it leaves no snapshot, no process
// and no layer that nothing else keeps (an image, another build) behind.
func (b *Builder) Build(ctx context.Context, opts BuildOptions) (img image.Image, err error) {
	file := opts.Dockerfile
	if file == "" {
		file = filepath.Join(opts.ContextDir, "Dockerfile")
	}
	if st, err := os.Stat(opts.ContextDir); err != nil || !st.IsDir() {
		return image.Image{}, fmt.Errorf("build context %s is not a directory", opts.ContextDir)
	}
	// A FIFO at the Dockerfile's path would block the open until Ctrl-C,
	// which could not interrupt it.
	df, err := safefile.Open(file)
	if err != nil {
		return image.Image{}, fmt.Errorf("reading Dockerfile: %w", err)
	}
	plan, err := dockerfile.ParseWithOptions(df, file, dockerfile.ParseOptions{Target: opts.Target})
	df.Close()
	if err != nil {
		return image.Image{}, err
	}
	names := make([]string, 0, len(opts.Tags))
	for _, t := range opts.Tags {
		n, err := image.Normalize(t)
		if err != nil {
			return image.Image{}, fmt.Errorf("-t %s: %w", t, err)
		}
		names = append(names, n)
	}
	for _, out := range opts.Outputs {
		if err := image.CheckOutput(out); err != nil {
			return image.Image{}, err
		}
	}
	progress := opts.Progress
	if progress == nil {
		progress = discardProgress{}
	}

	// The lease holds the base and the layers the build makes until the
	// image, and its exports, are done; if the build fails, its release
	// deletes the layers nothing else keeps.
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
	bs := &buildState{b: b, plan: plan, progress: progress, lease: lease, id: randomID()}
	img, err = bs.run(ctx, names)
	if err != nil {
		return image.Image{}, err
	}
	if len(opts.Outputs) == 0 {
		return img, nil
	}
	layers, err := b.images.Layers(img)
	if err != nil {
		return img, err
	}
	for _, out := range opts.Outputs {
		if out.Name == "" && len(names) > 0 {
			out.Name = names[0]
		}
		if err := image.WriteOCI(ctx, img, layers, b.store, out); err != nil {
			return img, err
		}
		progress.Event(Event{Kind: OutputWritten, Name: out.Dest})
	}
	return img, nil
}

// buildState is one build's progress through its plan.
type buildState struct {
	b        *Builder
	plan     *dockerfile.Plan
	progress Progress
	id       string // names this build's snapshots

	lease *snapshot.Lease // holds the base and the layers made

	config ocispec.Image
	env    *dockerfile.Environment // indexes config.Config.Env
	layers []image.Layer
	cmdSet bool // CMD given in this stage: ENTRYPOINT then keeps it
}

func (bs *buildState) run(ctx context.Context, names []string) (image.Image, error) {
	steps := len(bs.plan.Steps) + 1
	start := time.Now()
	bs.progress.Event(Event{Kind: StepStarted, Step: 1, Steps: steps, Text: "FROM " + bs.plan.Base})
	// Held from the lookup on: an rmi of the base meanwhile only untags it.
	var base image.Image
	var name string
	_, err := bs.lease.Hold(func() (string, error) {
		var err error
		base, name, err = bs.b.images.Resolve(bs.plan.Base)
		return base.TopLayer, err
	})
	if err != nil {
		if errors.Is(err, image.ErrNotFound) {
			return image.Image{}, fmt.Errorf("%s: base image %q not found in the store (import one with `stepexec import`, see `stepexec images`)", bs.plan.BaseLocation, bs.plan.Base)
		}
		return image.Image{}, fmt.Errorf("%s: %w", bs.plan.BaseLocation, err)
	}
	if bs.layers, err = bs.b.images.Layers(base); err != nil {
		return image.Image{}, err
	}
	bs.config = inherit(base.Config)
	bs.env = dockerfile.NewEnvironment(bs.config.Config.Env)
	if name == "" {
		name = bs.plan.Base
	}
	bs.progress.Event(Event{Kind: BaseResolved, Step: 1, Steps: steps, Name: name, Digest: "sha256:" + base.ID})
	bs.progress.Event(Event{Kind: StepDone, Step: 1, Steps: steps, Duration: time.Since(start)})

	for i, step := range bs.plan.Steps {
		if err := ctx.Err(); err != nil {
			return image.Image{}, err
		}
		n := i + 2
		start := time.Now()
		bs.progress.Event(Event{Kind: StepStarted, Step: n, Steps: steps, Text: step.Text})
		if err := bs.step(ctx, n, step); err != nil {
			return image.Image{}, err
		}
		bs.progress.Event(Event{Kind: StepDone, Step: n, Steps: steps, Duration: time.Since(start)})
	}

	now := time.Now().UTC()
	bs.config.Created = &now
	img, err := bs.b.images.Put(bs.config, bs.layers, names)
	if err != nil {
		return image.Image{}, err
	}
	bs.progress.Event(Event{Kind: ImageWritten, Digest: "sha256:" + img.ID})
	for _, n := range names {
		bs.progress.Event(Event{Kind: ImageNamed, Name: n})
	}
	return img, nil
}

// inherit starts a stage's config from its base image's: the runtime
// config and history carry over, the rootfs is rebuilt from the layers.
func inherit(base ocispec.Image) ocispec.Image {
	cfg := ocispec.Image{
		Platform: base.Platform,
		Config:   base.Config,
		History:  slices.Clone(base.History),
	}
	cfg.Config.Env = slices.Clone(base.Config.Env)
	cfg.Config.Cmd = slices.Clone(base.Config.Cmd)
	cfg.Config.Entrypoint = slices.Clone(base.Config.Entrypoint)
	if cfg.OS == "" {
		cfg.OS = "linux"
	}
	if cfg.Architecture == "" {
		cfg.Architecture = goarch()
	}
	if base.Config.Labels != nil {
		cfg.Config.Labels = make(map[string]string, len(base.Config.Labels))
		for k, v := range base.Config.Labels {
			cfg.Config.Labels[k] = v
		}
	}
	if path, _ := dockerfile.NewEnvironment(cfg.Config.Env).Get("PATH"); path == "" {
		cfg.Config.Env = append(cfg.Config.Env, defaultPath)
	}
	return cfg
}

func (bs *buildState) step(ctx context.Context, n int, step dockerfile.Step) error {
	cmd, err := bs.plan.Expand(step.Command, bs.env)
	if err != nil {
		return &StepError{Location: step.Location, Text: step.Text, Err: err}
	}
	cfg := &bs.config.Config
	switch c := cmd.(type) {
	case *dockerfile.Run:
		return bs.runStep(ctx, n, step, c)
	case *dockerfile.Env:
		for _, kv := range c.Pairs {
			bs.env.Set(kv.Key, kv.Value)
		}
		cfg.Env = bs.env.List()
	case *dockerfile.Label:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for _, kv := range c.Pairs {
			cfg.Labels[kv.Key] = kv.Value
		}
	case *dockerfile.Cmd:
		cfg.Cmd = bs.shellForm(c.Shell, c.Args)
		bs.cmdSet = true
	case *dockerfile.Entrypoint:
		cfg.Entrypoint = bs.shellForm(c.Shell, c.Args)
		// Docker: an ENTRYPOINT resets a CMD inherited from the base.
		if !bs.cmdSet {
			cfg.Cmd = nil
		}
	case *dockerfile.Workdir:
		dir := c.Path
		if !path.IsAbs(dir) {
			dir = path.Join("/", cfg.WorkingDir, dir)
		}
		cfg.WorkingDir = path.Clean(dir)
		return bs.workdirStep(ctx, n, step)
	default:
		return &StepError{Location: step.Location, Text: step.Text, Err: fmt.Errorf("not supported yet")}
	}
	bs.history(step.Text, true)
	return nil
}

func (bs *buildState) shellForm(shell bool, args []string) []string {
	if shell {
		return []string{"/bin/sh", "-c", strings.Join(args, " ")}
	}
	return slices.Clone(args)
}

func (bs *buildState) history(createdBy string, empty bool) {
	now := time.Now().UTC()
	bs.config.History = append(bs.config.History, ocispec.History{
		Created:    &now,
		CreatedBy:  createdBy,
		Comment:    "stepexec",
		EmptyLayer: empty,
	})
}

func (bs *buildState) top() string {
	if len(bs.layers) == 0 {
		return ""
	}
	return bs.layers[len(bs.layers)-1].ID
}

func (bs *buildState) snapshotKey(n int) string {
	return fmt.Sprintf("%s-%d", bs.id, n)
}

// inSnapshot prepares a writable snapshot on the current top layer, lets
// change work in it, and commits it into a layer; when change fails the
// snapshot is removed instead. Commit removes it on its own paths.
func (bs *buildState) inSnapshot(ctx context.Context, n int, step dockerfile.Step, forStep bool, change func(snap *snapshot.Snapshot, user runtime.User) error) (snapshot.Committed, time.Duration, error) {
	key := bs.snapshotKey(n)
	prepare := bs.b.store.Prepare // this process writes in it
	if forStep {
		prepare = bs.b.store.PrepareStep // a RUN step does: idmapped as real root
	}
	snap, err := prepare(ctx, key, bs.top())
	if err != nil {
		return snapshot.Committed{}, 0, bs.stepFailed(ctx, step, err)
	}
	user, err := lookupUser(ctx, snap.Dir, bs.config.Config.User)
	if err == nil {
		err = change(snap, user)
	}
	if err != nil {
		bs.b.store.Remove(key)
		return snapshot.Committed{}, 0, bs.stepFailed(ctx, step, err)
	}
	start := time.Now()
	c, err := bs.b.store.Commit(ctx, key, snapshot.CommitOptions{Lease: bs.lease})
	if err != nil {
		return snapshot.Committed{}, 0, bs.stepFailed(ctx, step, err)
	}
	bs.addLayer(c)
	return c, time.Since(start), nil
}

// stepFailed attributes err to step, unless the build was cancelled (then
// the cancellation is the news) or err already is a StepError.
func (bs *buildState) stepFailed(ctx context.Context, step dockerfile.Step, err error) error {
	var se *StepError
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.As(err, &se):
		return err
	}
	return &StepError{Location: step.Location, Text: step.Text, Err: err}
}

// runStep runs a RUN instruction: snapshot → sandbox → diff → layer.
func (bs *buildState) runStep(ctx context.Context, n int, step dockerfile.Step, run *dockerfile.Run) error {
	args := run.Args
	createdBy := "RUN " + strings.Join(run.Args, " ")
	if run.Shell {
		args = []string{"/bin/sh", "-c", run.Script}
		createdBy = "RUN /bin/sh -c " + run.Script
	}
	cfg := bs.config.Config
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	var res runtime.Result
	c, commitTime, err := bs.inSnapshot(ctx, n, step, true, func(snap *snapshot.Snapshot, user runtime.User) error {
		out := bs.progress.Output(n)
		setupStart := time.Now()
		var err error
		res, err = bs.b.runtime.Run(ctx, runtime.Spec{
			ID:       snap.Key,
			Rootfs:   snap.Dir,
			Args:     args,
			Env:      cfg.Env,
			Cwd:      cwd,
			User:     user,
			Hostname: bs.id[:12],
			Stdout:   out,
			Stderr:   out,
			OnStart: func() {
				bs.progress.Event(Event{Kind: SandboxCreated, Step: n, Duration: time.Since(setupStart)})
			},
		})
		if f, ok := out.(interface{ Flush() }); ok {
			f.Flush()
		}
		if err != nil {
			return err
		}
		bs.progress.Event(Event{Kind: CommandExited, Step: n, ExitCode: res.ExitCode, Duration: res.Run})
		if res.ExitCode != 0 {
			return &StepError{Location: step.Location, Text: step.Text, ExitCode: res.ExitCode}
		}
		return nil
	})
	if err != nil {
		return err
	}
	bs.progress.Event(Event{Kind: LayerDiffed, Step: n, Files: c.Files, Bytes: c.Bytes, Empty: c.Empty, Duration: commitTime})
	if !c.Empty {
		bs.progress.Event(Event{Kind: LayerCommitted, Step: n, Digest: c.Layer.DiffID.String()})
	}
	bs.progress.Event(Event{Kind: SandboxRemoved, Step: n, Duration: res.Teardown})
	bs.history(createdBy, c.Empty)
	return nil
}

// workdirStep makes the working directory if the image lacks it, in a
// layer of its own as BuildKit does.
func (bs *buildState) workdirStep(ctx context.Context, n int, step dockerfile.Step) error {
	c, _, err := bs.inSnapshot(ctx, n, step, false, func(snap *snapshot.Snapshot, user runtime.User) error {
		_, err := rootfs.MkdirAll(snap.Dir, bs.config.Config.WorkingDir, int(user.UID), int(user.GID))
		return err
	})
	if err != nil {
		return err
	}
	bs.history(step.Text, c.Empty)
	return nil
}

func (bs *buildState) addLayer(c snapshot.Committed) {
	if c.Empty {
		return
	}
	l := c.Layer
	bs.layers = append(bs.layers, image.Layer{ID: l.ID, DiffID: l.DiffID, Size: l.Size})
}

func randomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// Package stepexec builds OCI images from Dockerfiles without a daemon and
// without root: each RUN step runs in fresh namespaces (runc's libcontainer)
// on an overlay snapshot of the previous layer, and the snapshot's upper
// directory becomes the step's layer.
//
// Embedding: call [Reexec] first thing in main and return if it says so;
// then [EnterNamespace] (which re-executes the program once into a user
// namespace when not run as root); then [Open] a Builder.
//
//	func main() {
//		if stepexec.Reexec() {
//			return
//		}
//		if err := stepexec.EnterNamespace(userns.SubIDs); err != nil { ... }
//		b, err := stepexec.Open()
//		...
//		img, err := b.Build(ctx, stepexec.BuildOptions{ContextDir: "."})
//	}
package stepexec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"go.podman.io/storage/pkg/reexec"

	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/runtime"
	"github.com/stepexec/stepexec/runtime/userns"
	"github.com/stepexec/stepexec/snapshot"
)

// Reexec serves the roles a stepexec program is re-executed in:
// libcontainer's init (handled when package runtime loads) and
// containers/storage's helpers. When it returns true the process has done
// its job and main must return.
func Reexec() bool {
	return reexec.Init()
}

// EnterNamespace checks the host and, when not run as root, re-executes the
// program once inside a user and mount namespace that maps the caller's
// subordinate ids; the original process then only waits and exits with the
// child's status, so EnterNamespace returns only in the child. As root it
// re-executes the program in place (same pid) into a private mount
// namespace, where the build's mounts stay out of every other process's
// reach.
func EnterNamespace(mode userns.Mode) error {
	// The re-executed child is already where the checks lead.
	entered := os.Getenv(userns.ModeEnv) != "" && os.Geteuid() == 0 && userns.InUserNamespace()
	if !entered {
		if err := userns.Preflight(mode); err != nil {
			return err
		}
	}
	return userns.Enter(mode)
}

// Builder builds, imports and keeps images in one containers/storage store.
type Builder struct {
	store   *snapshot.Store
	images  *image.Store
	runtime *runtime.Runtime
}

type options struct {
	root, runRoot string
}

// Option configures Open.
type Option func(*options)

// WithRoot sets the store's graph root (default: containers/storage's, e.g.
// ~/.local/share/containers/storage for a rootless user).
func WithRoot(dir string) Option { return func(o *options) { o.root = dir } }

// WithRunRoot sets the store's run root (locks and mount state).
func WithRunRoot(dir string) Option { return func(o *options) { o.runRoot = dir } }

// Open opens the store. It must run as uid 0: inside the namespace
// EnterNamespace made, or as real root.
func Open(opts ...Option) (*Builder, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("stepexec: Open needs uid 0: call EnterNamespace first")
	}
	singleUID := userns.InUserNamespace() && userns.CurrentMode() == userns.SingleUID
	store, err := snapshot.Open(snapshot.Options{Root: o.root, RunRoot: o.runRoot, SquashOwners: singleUID})
	if err != nil {
		return nil, err
	}
	// The sandbox's state goes where the store cleans up after a killed
	// build (a `stepexec build | head` dies of SIGPIPE, CI kills jobs).
	state, err := store.ScratchDir()
	if err != nil {
		store.Close()
		return nil, err
	}
	rt, err := runtime.New(runtime.Options{StateDir: filepath.Join(state, "runc")})
	if err != nil {
		store.Close()
		return nil, err
	}
	return &Builder{store: store, images: image.NewStore(store.ImageRecords(), store), runtime: rt}, nil
}

// Images gives access to the images the builder keeps.
func (b *Builder) Images() *image.Store { return b.images }

// Close releases the store and removes the builder's temporary state.
func (b *Builder) Close() error {
	return errors.Join(b.runtime.Close(), b.store.Close())
}

// Package stepexec builds OCI images from Dockerfiles without a daemon and
// without root: each RUN step runs in fresh namespaces (runc's libcontainer)
// on an overlay snapshot of the previous layer, and the snapshot's upper
// directory becomes the step's layer.
//
// Embedding: a program that only builds hands its main to [Main], which
// serves the re-exec roles, enters the namespace, opens the store and
// cancels the build on SIGINT or SIGTERM:
//
//	func main() {
//		stepexec.Main(func(ctx context.Context, b *stepexec.Builder) error {
//			res, err := b.Build(ctx, stepexec.BuildOptions{ContextDir: "."})
//			if err == nil {
//				fmt.Println(res.ID)
//			}
//			return err
//		})
//	}
//
// A program with a main of its own calls the same three steps itself:
// [Reexec] first thing in main (and returns if it says so), then
// [EnterNamespace] (which re-executes the program once into a user
// namespace when not run as root), then [Open]. See the package example.
//
// The binary must be built with cgo and the build tags in the module's
// scripts/build-tags (exclude_graphdriver_btrfs exclude_graphdriver_zfs
// seccomp).
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

// Mode selects how a process that is not root maps ids in the user
// namespace EnterNamespace makes (as root it does not matter).
type Mode = userns.Mode

const (
	// SubIDs maps the caller's uid and gid to 0 and its /etc/subuid and
	// /etc/subgid ranges after them (through newuidmap and newgidmap), so
	// RUN steps have the 65536 ids an image expects. The default.
	SubIDs = userns.SubIDs
	// SingleUID maps only the caller's own uid and gid, to 0: nothing
	// needs to be set up on the host, but see WarnSingleUID.
	SingleUID = userns.SingleUID
)

// WarnSingleUID says what does not work in SingleUID mode.
const WarnSingleUID = userns.WarnSingleUID

// Reexec serves the roles a stepexec program is re-executed in:
// libcontainer's init (handled when package runtime loads) and
// containers/storage's helpers. When it returns true the process has done
// its job and main must return.
func Reexec() bool {
	return reexec.Init()
}

// EnterNamespace checks the host and, when not run as root, re-executes the
// program once inside a user and mount namespace that maps the caller's
// ids as mode says; the original process then only waits and exits with
// the child's status, so EnterNamespace returns only in the child. As root
// it re-executes the program in place (same pid) into a private mount
// namespace, where the build's mounts stay out of every other process's
// reach. The checks name every problem found on the host and its fix.
func EnterNamespace(mode Mode) error {
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
// Its methods are safe for concurrent use.
type Builder struct {
	store    *snapshot.Store
	images   *image.Store
	runtime  *runtime.Runtime
	identity identity
}

// Open opens the store (default: containers/storage's, the one podman
// uses). It must run as uid 0: inside the namespace EnterNamespace made,
// or as real root.
func Open(opts ...Option) (*Builder, error) {
	o, err := applyOptions(opts)
	if err != nil {
		return nil, err
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
	filters, err := store.PersistentDir("seccomp")
	if err != nil {
		store.Close()
		return nil, err
	}
	rt, err := runtime.New(runtime.Options{StateDir: filepath.Join(state, "runc"), FilterCache: filters})
	if err != nil {
		store.Close()
		return nil, err
	}
	return &Builder{store: store, images: image.NewStore(store.ImageRecords(), store), runtime: rt,
		identity: detectIdentity()}, nil
}

// Images gives access to the images the builder keeps.
func (b *Builder) Images() *image.Store { return b.images }

// Close releases the store and removes the builder's temporary state.
func (b *Builder) Close() error {
	return errors.Join(b.runtime.Close(), b.store.Close())
}

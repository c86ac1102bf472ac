package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"go.podman.io/storage"
	"go.podman.io/storage/pkg/homedir"
	"go.podman.io/storage/pkg/unshare"
	"golang.org/x/sys/unix"
)

// Options selects the store to open.
type Options struct {
	// Root is the graph root; "" = the containers/storage default
	// (rootless: ~/.local/share/containers/storage, root:
	// /var/lib/containers/storage, or graphroot from storage.conf).
	Root string
	// RunRoot is the run root; "" = the one podman 4.3 (Debian 12) run by the
	// same user picks, so both share locks and mount state. See DefaultRunRoot.
	RunRoot string
	// SquashOwners makes layers written through the store's driver (a
	// registry pull) keep going when a file's owner cannot be set,
	// leaving it owned by root, as podman's ignore_chown_errors: for a
	// user namespace that maps one id (single-uid mode).
	SquashOwners bool
}

// Store is a containers/storage store plus the snapshots this process made.
// Its methods are safe for concurrent use.
type Store struct {
	store     storage.Store
	graphRoot string
	base      string // <graphroot>/stepexec
	empty     string // empty lower dir for snapshots without a parent
	ownerDir  string // <base>/snapshots/<owner>
	ownerLock *os.File

	mu     sync.Mutex
	snaps  map[string]*snapState
	closed bool
	leases map[*Lease]struct{} // not yet released
	// pending: the layers CommitAsync is storing (pending.go), by ID.
	pending map[string]*pendingLayer
	storing sync.WaitGroup
	// What Open's collection deleted, and its error (Prune reports them).
	openCollected Collected
	openErr       error
	foundDead     bool // Open removed a dead process's owner directory

	ownLeaseMu   sync.Mutex
	defaultLease *Lease // for commits without a lease of their own

	viewMu sync.Mutex
	view   *stepView // real root: made by the first ForStep Prepare
}

// Open opens (creating if needed) the store with the overlay driver, checks
// that overlay runs natively, and removes snapshot directories left by
// processes that were killed. It must be called as uid 0.
//
// containers/storage hands out one shared store per graph root and run root
// in a process, and Close shuts it down: open a root once per process.
func Open(opts Options) (*Store, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("snapshot: opening the store needs uid 0 (real root, or root in stepexec's user namespace); running as uid %d", os.Geteuid())
	}
	defaults, err := storage.DefaultStoreOptions()
	if err != nil {
		return nil, fmt.Errorf("snapshot: reading containers/storage defaults: %w", err)
	}
	so := defaults
	so.GraphDriverName = "overlay"
	so.GraphDriverPriority = nil
	// skip_mount_home: the driver would otherwise bind-mount
	// <graphroot>/overlay onto itself (to make it private), and a rename
	// from our snapshot dirs into its staging dir would then cross mounts
	// (EXDEV). We never mount through the driver, so there is nothing to
	// keep private; later options win over storage.conf's.
	so.GraphDriverOptions = append(dropMountProgram(defaults.GraphDriverOptions), "overlay.skip_mount_home=true")
	if opts.SquashOwners {
		so.GraphDriverOptions = append(so.GraphDriverOptions, "overlay.ignore_chown_errors=true")
	}
	// Store-level id maps would make the store chown-copy every layer.
	so.UIDMap, so.GIDMap = nil, nil
	if opts.Root != "" {
		so.GraphRoot = opts.Root
	}
	so.RunRoot = opts.RunRoot
	if so.RunRoot == "" {
		so.RunRoot = DefaultRunRoot(defaults.RunRoot)
	}

	cs, err := storage.GetStore(so)
	if err != nil {
		return nil, noUserXattrs(so.GraphRoot, fmt.Errorf("snapshot: opening store %s (run root %s): %w", so.GraphRoot, so.RunRoot, err))
	}
	if err := checkNativeDiff(cs); err != nil {
		_, _ = cs.Shutdown(false)
		return nil, noUserXattrs(so.GraphRoot, err)
	}

	s := &Store{
		store:     cs,
		graphRoot: cs.GraphRoot(),
		snaps:     map[string]*snapState{},
		leases:    map[*Lease]struct{}{},
		pending:   map[string]*pendingLayer{},
	}
	s.base = filepath.Join(s.graphRoot, "stepexec")
	s.empty = filepath.Join(s.base, "empty")
	if err := s.setupOwner(); err != nil {
		_, _ = cs.Shutdown(false)
		return nil, err
	}
	// What killed processes left: the layers their leases held that
	// nothing keeps, the images rmi released while they built. Best
	// effort: a failure here must not stop every command; Prune reports it.
	s.openCollected, s.openErr = s.sweep(sweepOptions{})
	if s.foundDead {
		s.dropDanglingLinks()
	}
	return s, nil
}

// dropDanglingLinks removes overlay/l short-name links whose layer is gone.
// The overlay driver makes a layer's diff dir before its link, and removes
// the link before the dir, so a dangling one is never another process's
// layer in the making: it is what a process killed between the driver's
// link and its "link" file left, which the store's own clean-up of the
// incomplete layer (done when the store loads, before this) cannot find.
// It reads every link: Open runs it only when it found a dead process's
// owner directory, Prune always.
func (s *Store) dropDanglingLinks() {
	if _, err := s.store.Layers(); err != nil { // loads the store: incomplete layers go first
		return
	}
	links := filepath.Join(s.graphRoot, "overlay", "l")
	entries, err := os.ReadDir(links)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(links, e.Name())
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			if _, lerr := os.Lstat(p); lerr == nil {
				_ = os.Remove(p)
			}
		}
	}
}

// dropMountProgram removes mount_program options: they would make the driver
// use fuse-overlayfs, whose layers our own native mounts cannot stack on.
func dropMountProgram(in []string) []string {
	var out []string
	for _, o := range in {
		key, _, _ := strings.Cut(o, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		if key == "mount_program" || strings.HasSuffix(key, ".mount_program") {
			continue
		}
		out = append(out, o)
	}
	return out
}

// noUserXattrs explains err, a store that could not be opened rootless,
// when the store's filesystem has no user xattrs, which overlay needs in
// a user namespace (userxattr): tmpfs before Linux 6.6, some network and
// FUSE filesystems.
func noUserXattrs(root string, err error) error {
	if !inUserNamespace() {
		return err
	}
	dir := root
	for { // the store's directory, or where it would be
		if _, serr := os.Stat(dir); serr == nil || filepath.Dir(dir) == dir {
			break
		}
		dir = filepath.Dir(dir)
	}
	f, perr := os.CreateTemp(dir, ".xattr-probe-")
	if perr != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if xerr := unix.Fsetxattr(int(f.Fd()), "user.stepexec.probe", []byte("1"), 0); errors.Is(xerr, unix.EOPNOTSUPP) {
		return fmt.Errorf("snapshot: the filesystem of %s has no user xattrs (tmpfs before Linux 6.6 has none), which overlayfs needs without real root: put the store on another filesystem (--root): %w", root, err)
	}
	return err
}

func checkNativeDiff(cs storage.Store) error {
	status, err := cs.Status()
	if err != nil {
		return fmt.Errorf("snapshot: reading overlay driver status of %s: %w", cs.GraphRoot(), err)
	}
	for _, kv := range status {
		if kv[0] == "Native Overlay Diff" {
			if kv[1] == "true" {
				return nil
			}
			return fmt.Errorf("snapshot: the overlay driver for %s cannot use native overlayfs (Native Overlay Diff: %s); stepexec needs native overlay: run it as real root or in its user namespace on a kernel with unprivileged overlayfs, and do not configure a mount_program", cs.GraphRoot(), kv[1])
		}
	}
	return fmt.Errorf("snapshot: the storage driver for %s reports no \"Native Overlay Diff\" status (driver %s); stepexec needs the native overlay driver", cs.GraphRoot(), cs.GraphDriverName())
}

// DefaultRunRoot returns the run root stepexec uses when Options.RunRoot is
// empty; storageDefault is what containers/storage picked.
//
// As root (not rootless) it is storageDefault: podman reads the same
// storage.conf (/run/containers/storage by default). Rootless, for the user
// with uid U, podman 4.3 on Debian 12 (measured) uses, and so do we:
//  1. a runroot set in storage.conf (seen as storageDefault differing from
//     the library's own default), else
//  2. $XDG_RUNTIME_DIR/containers when XDG_RUNTIME_DIR names a directory
//     owned by the user, else
//  3. /run/user/U/containers when /run/user/U is a directory owned by U,
//     else
//  4. $TMPDIR/podman-run-U/containers when XDG_RUNTIME_DIR is unset (podman
//     sets it to that), else
//  5. $TMPDIR/containers-user-U/containers (XDG_RUNTIME_DIR set but
//     unusable: the older storage library's fallback).
//
// storage v1.65's own rootless default differs in cases 4 and 5
// ($TMPDIR/storage-run-U). Podman also remembers the run root it first used
// in its database; a user whose environment changed since may see podman
// keep the old one.
func DefaultRunRoot(storageDefault string) string {
	uid := unshare.GetRootlessUID()
	if !unshare.IsRootless() || uid == 0 {
		return storageDefault
	}
	if rt, err := homedir.GetRuntimeDir(); err == nil && storageDefault != filepath.Join(rt, "containers") {
		return storageDefault
	}
	// Inside the user namespace the caller's uid maps to 0 = our euid.
	owned := func(dir string) bool {
		var st unix.Stat_t
		return unix.Stat(dir, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && int(st.Uid) == os.Geteuid()
	}
	xdg, xdgSet := os.LookupEnv("XDG_RUNTIME_DIR")
	return rootlessRunRoot(uid, xdg, xdgSet && xdg != "", owned, os.TempDir())
}

// rootlessRunRoot is rules 2-5 of DefaultRunRoot.
func rootlessRunRoot(uid int, xdg string, xdgSet bool, owned func(string) bool, tmp string) string {
	u := strconv.Itoa(uid)
	switch {
	case xdgSet && owned(xdg):
		return filepath.Join(xdg, "containers")
	case owned(filepath.Join("/run/user", u)):
		return filepath.Join("/run/user", u, "containers")
	case !xdgSet:
		return filepath.Join(tmp, "podman-run-"+u, "containers")
	default:
		return filepath.Join(tmp, "containers-user-"+u, "containers")
	}
}

// setupOwner creates this Store's owner directory and lock, after removing
// owner directories whose lock no live process holds (queueing their lease
// journals for collection). Both happen under the store-wide stepexec lock
// so that a directory being created is never taken for a stale one.
func (s *Store) setupOwner() error {
	snapRoot := filepath.Join(s.base, "snapshots")
	if err := repairTraversal(s.graphRoot); err != nil {
		return err
	}
	if err := os.MkdirAll(snapRoot, 0o700); err != nil {
		return fmt.Errorf("snapshot: creating %s: %w", snapRoot, err)
	}
	if err := os.MkdirAll(s.empty, 0o755); err != nil {
		return fmt.Errorf("snapshot: creating %s: %w", s.empty, err)
	}
	orphans := s.queue(orphansQueue)
	if err := os.MkdirAll(orphans, 0o700); err != nil {
		return fmt.Errorf("snapshot: creating %s: %w", orphans, err)
	}
	global, err := lockFile(filepath.Join(s.base, ownersLockName), true)
	if err != nil {
		return err
	}
	defer global.Close() // releases the flock

	entries, err := os.ReadDir(snapRoot)
	if err != nil {
		return fmt.Errorf("snapshot: reading %s: %w", snapRoot, err)
	}
	for _, e := range entries {
		dead, err := removeIfStale(filepath.Join(snapRoot, e.Name()), orphans)
		if err != nil {
			return err
		}
		s.foundDead = s.foundDead || dead
	}
	if os.Geteuid() == 0 && !inUserNamespace() {
		removeStaleStepRoots()
	}

	dir, err := os.MkdirTemp(snapRoot, "o")
	if err != nil {
		return fmt.Errorf("snapshot: creating owner directory in %s: %w", snapRoot, err)
	}
	lock, err := lockFile(filepath.Join(dir, "lock"), false)
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	if err := os.Mkdir(filepath.Join(dir, leasesDir), 0o700); err != nil {
		lock.Close()
		os.RemoveAll(dir)
		return fmt.Errorf("snapshot: %w", err)
	}
	s.ownerDir, s.ownerLock = dir, lock
	return nil
}

// removeIfStale deletes an owner directory unless a live process holds its
// lock, after moving its lease journals to the orphans queue. Mount points
// in it are detached first: they exist only if the dead process was real
// root in the host's mount namespace. It reports whether it removed dir.
func removeIfStale(dir, orphans string) (bool, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
	if err == nil {
		defer f.Close()
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return false, nil // live
		}
		if err != nil {
			return false, fmt.Errorf("snapshot: testing lock in %s: %w", dir, err)
		}
	} else if !errors.Is(err, unix.ENOENT) {
		return false, fmt.Errorf("snapshot: opening lock in %s: %w", dir, err)
	}
	// Held until the directory is gone, so no one else deems it alive
	// or stale meanwhile.
	if err := queueJournals(dir, orphans); err != nil {
		return false, err
	}
	snaps, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("snapshot: reading stale %s: %w", dir, err)
	}
	for _, e := range snaps {
		if e.IsDir() {
			if err := unmount(filepath.Join(dir, e.Name(), "merged")); err != nil {
				return false, fmt.Errorf("snapshot: cleaning stale snapshot: %w", err)
			}
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return false, fmt.Errorf("snapshot: removing stale %s: %w", dir, err)
	}
	return true, nil
}

// queueJournals moves the lease journals of the dead owner dir to the
// orphans queue, where the next collection (this Open's) finds them even
// should this process die too.
func queueJournals(dir, orphans string) error {
	journals, err := os.ReadDir(filepath.Join(dir, leasesDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("snapshot: reading stale leases in %s: %w", dir, err)
	}
	for _, j := range journals {
		from := filepath.Join(dir, leasesDir, j.Name())
		to := filepath.Join(orphans, filepath.Base(dir)+"-"+j.Name())
		if err := os.Rename(from, to); err != nil {
			return fmt.Errorf("snapshot: queueing stale lease %s: %w", from, err)
		}
	}
	return nil
}

// scratchName is the directory in the owner directory that ScratchDir hands out.
const scratchName = "scratch"

// ScratchDir returns a private directory for this Store's user (e.g. the
// sandbox's state). It lives in the owner directory, so Close removes it
// and, should the process die first, the next Open anywhere on this store
// does: unlike a temp dir, it cannot outlive a killed build for long.
func (s *Store) ScratchDir() (string, error) {
	dir := filepath.Join(s.ownerDir, scratchName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("snapshot: creating %s: %w", dir, err)
	}
	return dir, nil
}

// PersistentDir returns <graphroot>/stepexec/NAME, created if missing: a
// directory that outlives builds (RUN --mount=type=cache).
func (s *Store) PersistentDir(name string) (string, error) {
	dir := filepath.Join(s.base, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("snapshot: creating %s: %w", dir, err)
	}
	return dir, nil
}

// RunDir returns <runroot>/stepexec/NAME, created if missing: state that
// concurrent processes on the store share but that need not outlive a
// reboot (the build cache's locks). The run root is where
// containers/storage keeps its own such state, a tmpfs on most hosts.
func (s *Store) RunDir(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return "", fmt.Errorf("snapshot: invalid run dir name %q", name)
	}
	dir := filepath.Join(s.store.RunRoot(), "stepexec", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("snapshot: creating %s: %w", dir, err)
	}
	return dir, nil
}

// Close removes this Store's snapshots, releases its leases and shuts the
// store down. Calling it again is a no-op.
func (s *Store) Close() error {
	s.storing.Wait() // the commits under way finish first
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	snaps := s.snaps
	s.snaps = nil
	leases := s.leases
	s.leases = nil
	s.mu.Unlock()

	var errs []error
	for _, st := range snaps {
		if err := st.destroy(); err != nil {
			errs = append(errs, err)
		}
	}
	// Leases not released are released now.
	var held []string
	for l := range leases {
		held = append(held, l.end()...)
	}
	// After a failed destroy a mount may remain: never recurse into it.
	// The journals then stay too, for the next Open to collect.
	if s.ownerDir != "" && len(errs) == 0 {
		if err := os.RemoveAll(s.ownerDir); err != nil {
			errs = append(errs, fmt.Errorf("snapshot: removing %s: %w", s.ownerDir, err))
		} else if _, err := s.sweep(sweepOptions{candidates: held}); err != nil {
			errs = append(errs, err)
		}
	}
	s.viewMu.Lock()
	if s.view != nil {
		if err := s.view.close(); err != nil {
			errs = append(errs, fmt.Errorf("snapshot: %w", err))
		}
		s.view = nil
	}
	s.viewMu.Unlock()
	if s.ownerLock != nil {
		s.ownerLock.Close()
	}
	if _, err := s.store.Shutdown(false); err != nil {
		errs = append(errs, fmt.Errorf("snapshot: shutting down store %s: %w", s.graphRoot, err))
	}
	return errors.Join(errs...)
}

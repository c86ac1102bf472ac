package snapshot

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// perm is the permission bits of path (0 if it is missing).
func perm(t testing.TB, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestStepSnapshotsStayPrivate checks, as real root, that preparing a
// snapshot for a step opens nothing of the store to other users: the
// stepexec directories, the owner and snapshot directories stay 0700 and
// the graph root and its parent keep their modes; the step's root reaches
// its rootfs through the Store's tmpfs instead (0711, in a 0711 base).
func TestStepSnapshotsStayPrivate(t *testing.T) {
	shiftOrSkip(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	graph := filepath.Join(dir, "graph")
	s, err := Open(Options{Root: graph, RunRoot: filepath.Join(dir, "run")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	graphMode := perm(t, graph)
	snap, err := s.Prepare(context.Background(), "step", "", ForStep())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{
		dir:                                0o700,
		graph:                              graphMode,
		s.base:                             0o700,
		filepath.Join(s.base, "snapshots"): 0o700,
		s.ownerDir:                         0o700,
		filepath.Join(s.ownerDir, "step"):  0o700,
		stepRootsBase:                      0o711,
		s.view.roots.dir:                   0o711,
	}
	for p, w := range want {
		if got := perm(t, p); got != w {
			t.Errorf("%s is %o, want %o", p, got, w)
		}
	}
	if graphMode&0o077 != 0 {
		t.Errorf("the graph root %s is %o: open to other users", graph, graphMode)
	}
	if filepath.Dir(snap.Dir) != s.view.roots.dir {
		t.Errorf("step snapshot mounted at %s, not in the steps' roots %s", snap.Dir, s.view.roots.dir)
	}
}

// TestOpenRepairsTraversal checks that Open takes back the o+x an earlier
// stepexec gave others on a real-root store and its ancestors (0700 ones
// became 0701), leaving a+x as podman's --userns=auto sets it (0711) and
// stores never opened up alone.
func TestOpenRepairsTraversal(t *testing.T) {
	top := t.TempDir()
	parent := filepath.Join(top, "parent")
	graph := filepath.Join(parent, "graph")
	run := filepath.Join(top, "run")
	s, err := Open(Options{Root: graph, RunRoot: run})
	if err != nil {
		t.Fatal(err)
	}
	base := s.base
	s.Close()

	chmod := func(modes map[string]os.FileMode) {
		for p, m := range modes {
			if err := os.Chmod(p, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	// What makeTraversable did, under a podman-style a+x top dir.
	chmod(map[string]os.FileMode{top: 0o711, parent: 0o701, graph: 0o701, base: 0o701, filepath.Join(base, "snapshots"): 0o701})
	if s, err = Open(Options{Root: graph, RunRoot: run}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	want := map[string]os.FileMode{top: 0o711, parent: 0o700, graph: 0o700, base: 0o700, filepath.Join(base, "snapshots"): 0o700}
	for p, w := range want {
		if got := perm(t, p); got != w {
			t.Errorf("after Open %s is %o, want %o", p, got, w)
		}
	}

	// Without the mark in stepexec/, 0701 is someone's choice.
	chmod(map[string]os.FileMode{graph: 0o701})
	if s, err = Open(Options{Root: graph, RunRoot: run}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := perm(t, graph); got != 0o701 {
		t.Errorf("unmarked graph root changed to %o", got)
	}
}

// TestRemoveStaleStepRoots checks that only the mount points of dead
// processes are removed.
func TestRemoveStaleStepRoots(t *testing.T) {
	old := stepRootsBase
	stepRootsBase = t.TempDir()
	defer func() { stepRootsBase = old }()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{ // name -> must survive
		strconv.Itoa(dead.Process.Pid) + "-1": false,
		strconv.Itoa(os.Getpid()) + "-2":      true,
		"notapid":                             true,
	}
	for n := range names {
		if err := os.Mkdir(filepath.Join(stepRootsBase, n), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	removeStaleStepRoots()
	for n, keep := range names {
		_, err := os.Lstat(filepath.Join(stepRootsBase, n))
		if keep != (err == nil) {
			t.Errorf("%s: exists=%v, want %v", n, err == nil, keep)
		}
	}
}

// mountOptions returns the per-mount options of the mount at target.
func mountOptions(t testing.TB, target string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[4] == target {
			return strings.Split(f[5], ",")
		}
	}
	t.Fatalf("%s is not a mount point", target)
	return nil
}

// TestSnapshotsAreNodev checks that every snapshot's overlay is mounted
// nodev (new mount API, mount(2) fallback, step snapshots), and, as real
// root, that a device node in a snapshot opens nothing.
func TestSnapshotsAreNodev(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	realRoot := os.Geteuid() == 0 && !inUserNamespace()
	cases := []struct {
		key    string
		legacy bool
		step   bool
	}{{"api", false, false}, {"legacy", true, false}, {"step", false, true}}
	for _, c := range cases {
		restore := setLowerdirAppend(!c.legacy)
		var snap *Snapshot
		var err error
		if c.step {
			snap, err = s.Prepare(ctx, c.key, "", ForStep())
		} else {
			snap, err = s.Prepare(ctx, c.key, "")
		}
		restore()
		if err != nil {
			t.Fatalf("%s: %v", c.key, err)
		}
		if opts := mountOptions(t, snap.Dir); !slices.Contains(opts, "nodev") {
			t.Errorf("%s: %s mounted %v, without nodev", c.key, snap.Dir, opts)
		}
		if realRoot && !c.step {
			null := filepath.Join(snap.Dir, "null")
			if err := unix.Mknod(null, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
				t.Fatal(err)
			}
			if f, err := os.OpenFile(null, os.O_WRONLY, 0); err == nil {
				f.Close()
				t.Errorf("%s: opened a device node in a snapshot", c.key)
			} else if !os.IsPermission(err) {
				t.Errorf("%s: opening a device node: %v, want EACCES", c.key, err)
			}
		}
	}
}

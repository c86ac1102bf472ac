package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/exeseal"

	"github.com/stepexec/stepexec/internal/testenv"
)

// TestInitSealing: steps' inits are sealed the cheap way (as real root the
// builder already runs from a sealed copy; rootless libcontainer's
// read-only overlay of the binary's directory works), and a state dir
// inside the binary's directory is detected: every step copies the
// binary then, and the builder says so.
func TestInitSealing(t *testing.T) {
	rootfs := sharedRootfs(t)
	r := newRuntime(t)
	if res, _, errOut := run(t, r, rootfs, nil, "true"); res.ExitCode != 0 {
		t.Fatalf("exit %d: %s", res.ExitCode, errOut)
	}
	if r.sealing.copies {
		t.Error("steps copy the whole binary: libcontainer could not seal their init with an overlay")
	}
	if exeseal.IsSelfExeCloned() {
		return // real root: the state dir's place does not matter
	}
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	inside, err := os.MkdirTemp(filepath.Dir(exe), "state-")
	testenv.Need(t, err == nil, "a writable directory of the test binary (scripts/as-test-user gives one): %v", err)
	defer os.RemoveAll(inside)
	overlapping, err := New(Options{StateDir: inside})
	if err != nil {
		t.Fatal(err)
	}
	defer overlapping.Close()
	if res, _, errOut := run(t, overlapping, rootfs, nil, "true"); res.ExitCode != 0 {
		t.Fatalf("with the state dir in the binary's directory: exit %d: %s", res.ExitCode, errOut)
	}
	if !overlapping.sealing.copies {
		t.Error("a state dir inside the binary's directory was not noticed")
	}
}

// TestReplacedBinary: a binary replaced on disk (renamed over, as go
// build and package managers do) is told apart from the running one.
func TestReplacedBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "stepexec")
	if err := os.WriteFile(bin, []byte("old"), 0o755); err != nil {
		t.Fatal(err)
	}
	running, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := replacedBinary(running, bin); err != nil {
		t.Errorf("unchanged binary: %v", err)
	}
	next := bin + ".new"
	if err := os.WriteFile(next, []byte("new"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, bin); err != nil {
		t.Fatal(err)
	}
	if err := replacedBinary(running, bin); err == nil || !strings.Contains(err.Error(), "was replaced") {
		t.Errorf("replaced binary: %v, want it refused", err)
	}
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if err := replacedBinary(running, bin); err != nil {
		t.Errorf("removed binary (libcontainer copies the running one): %v", err)
	}
	if err := runningBinaryAt("/proc/self/exe"); err != nil {
		t.Errorf("the test binary itself: %v", err)
	}
}

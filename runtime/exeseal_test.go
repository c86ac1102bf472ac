package runtime

import (
	"os"
	"path/filepath"
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

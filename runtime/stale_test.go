package runtime

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stepexec/stepexec/runtime/userns"
)

// TestStaleCgroupsRemoved makes the cgroups a killed real-root build leaves
// (stepexec-PID/STEP in a hierarchy, PID dead) next to those of a live one:
// New removes the former and keeps the latter.
func TestStaleCgroupsRemoved(t *testing.T) {
	if os.Geteuid() != 0 || userns.InUserNamespace() {
		t.Skip("only real root makes cgroups for steps")
	}
	hier, _ := filepath.Glob("/sys/fs/cgroup/pids")
	if len(hier) == 0 {
		hier = []string{"/sys/fs/cgroup"} // cgroup v2
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer live.Wait()
	defer live.Process.Kill()
	stale := filepath.Join(hier[0], "stepexec-"+strconv.Itoa(dead.Process.Pid))
	kept := filepath.Join(hier[0], "stepexec-"+strconv.Itoa(live.Process.Pid))
	for _, d := range []string{stale, kept} {
		if err := os.MkdirAll(filepath.Join(d, "step"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	defer removeCgroupTree(kept)
	defer removeCgroupTree(stale)

	r, err := New(Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the killed build's cgroup %s is still there (%v)", stale, err)
	}
	if _, err := os.Stat(filepath.Join(kept, "step")); err != nil {
		t.Errorf("the live build's cgroup went: %v", err)
	}
}

package runtime

import (
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// hostLimitsSteps says, independently of CheckLimits, whether this
// process can limit steps: real root can (cgroup v1 or v2); rootless only
// on cgroup v2 where the parent of its cgroup is delegated (writable).
func hostLimitsSteps(r *Runtime) bool {
	if r.realRoot {
		return true
	}
	if !cgroups.IsCgroup2UnifiedMode() {
		return false
	}
	m, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
	return err == nil && unix.Access(filepath.Join("/sys/fs/cgroup", path.Dir(m[""])), unix.W_OK) == nil
}

// TestLimits runs steps under --pids-limit and --memory where this host
// can limit them: a step that forks past its pids limit fails with fork's
// EAGAIN, one that allocates past its memory is OOM-killed (exit 137), and
// steps within the limits succeed; no cgroup is left. Where the host
// cannot (rootless on cgroup v1, as on the project's VM), CheckLimits
// refuses them with the reason.
func TestLimits(t *testing.T) {
	r := newRuntime(t)
	all := Limits{Memory: 32 << 20, Pids: 10}
	if !hostLimitsSteps(r) {
		err := r.CheckLimits(all)
		if err == nil || !strings.Contains(err.Error(), "cgroup") {
			t.Fatalf("CheckLimits on a host that cannot limit this process's steps: %v, want the reason", err)
		}
		t.Logf("refused, as it must be here: %v", err)
		return
	}
	if err := r.CheckLimits(all); err != nil {
		t.Fatal(err)
	}
	rootfs := alpineRootfs(t)
	cases := []struct {
		name     string
		limits   Limits
		script   string
		wantCode int    // -1: any non-zero
		wantErr  string // in stderr
	}{
		{"forks past the pids limit", Limits{Pids: 10}, `i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); done; echo forked all`, -1, "can't fork"},
		{"forks within the pids limit", Limits{Pids: 10}, `sleep 0.1 & sleep 0.1 & wait`, 0, ""},
		{"allocates past the memory limit", Limits{Memory: 32 << 20}, `dd if=/dev/zero of=/dev/null bs=100M count=1`, 137, ""},
		{"allocates within the memory limit", Limits{Memory: 32 << 20}, `dd if=/dev/zero of=/dev/null bs=8M count=1`, 0, ""},
		{"no limits: many forks", Limits{}, `i=0; while [ $i -lt 40 ]; do sleep 0.2 & i=$((i+1)); done; wait`, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, _, stderr := run(t, r, rootfs, func(s *Spec) { s.Limits = c.limits }, c.script)
			if c.wantCode == -1 && res.ExitCode == 0 || c.wantCode >= 0 && res.ExitCode != c.wantCode {
				t.Errorf("exit %d, want %d; stderr: %s", res.ExitCode, c.wantCode, stderr)
			}
			if !strings.Contains(stderr, c.wantErr) {
				t.Errorf("stderr %q, want %q in it", stderr, c.wantErr)
			}
		})
	}
	if left := r.cgroupDirs(cgroupParent); len(left) != 0 {
		t.Errorf("cgroups left after the steps: %v", left)
	}
}

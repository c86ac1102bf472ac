package integration

import (
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/cgroups"
)

// canLimit says, from the host's cgroups, whether the account's builds can
// limit RUN steps: root always (cgroup v1 or v2); an unprivileged user only
// on cgroup v2 when the parent of the cgroup its commands run in (this
// test's, which setpriv keeps) is the user's own: delegated.
func canLimit(a *account) bool {
	if !a.rootless() {
		return true
	}
	if !cgroups.IsCgroup2UnifiedMode() {
		return false
	}
	m, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		return false
	}
	fi, err := os.Stat(filepath.Join("/sys/fs/cgroup", path.Dir(m[""])))
	return err == nil && int(fi.Sys().(*syscall.Stat_t).Uid) == a.uid
}

// TestBuildLimits: `build --pids-limit` makes a RUN that forks past it
// fail, naming the Dockerfile line; `--memory` OOM-kills a RUN that
// allocates past it (exit 137); within the limits the build succeeds.
// Where the account cannot limit steps (rootless on cgroup v1, as on the
// project's VM, or without delegation) the build is refused before it
// starts, saying why. Nothing is left behind either way.
func TestBuildLimits(t *testing.T) {
	cases := []struct {
		name, flags, run string
		fails            string // in stderr when it fails; "" when it succeeds
	}{
		{"forks past --pids-limit", "--pids-limit=10", `i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); done`, "can't fork"},
		{"allocates past --memory", "--memory=32m", `dd if=/dev/zero of=/dev/null bs=100M count=1`, "exit code 137"},
		{"within both", "--memory=64m --pids-limit=20", `sleep 0.1 & dd if=/dev/zero of=/dev/null bs=8M count=1 && wait`, ""},
	}
	for _, a := range accounts(t) {
		t.Run(a.name, func(t *testing.T) {
			a.importAlpine(t)
			limited := canLimit(a)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					before := a.storeLayers(t)
					dir := a.writeContext(t, "limits", "FROM alpine\nRUN "+c.run+"\n")
					r := a.run(t, append(append([]string{"build", "--no-cache"}, strings.Fields(c.flags)...), dir)...)
					switch {
					case !limited:
						if r.code == 0 || !strings.Contains(r.stderr, "cannot limit RUN steps'") || !strings.Contains(r.stderr, "cgroup") {
							t.Errorf("a build with %s where %s cannot limit steps: want it refused with the reason: %s", c.flags, a.name, r)
						}
					case c.fails != "":
						if r.code == 0 || !strings.Contains(r.stderr, c.fails) || !strings.Contains(r.stderr, "Dockerfile:2") {
							t.Errorf("want the RUN to fail (%q, at Dockerfile:2): %s", c.fails, r)
						}
					case r.code != 0:
						t.Errorf("a RUN within its limits failed: %s", r)
					}
					a.assertNothingLeft(t, before)
				})
			}
		})
	}
}

package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeCgroups builds a cgroup tree under a temp dir: each dir with its
// cgroup.controllers content ("" for none), and cgroup.procs.
func fakeCgroups(t *testing.T, dirs map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for dir, controllers := range dirs {
		d := filepath.Join(root, dir)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range map[string]string{"cgroup.controllers": controllers, "cgroup.procs": "", "cgroup.subtree_control": ""} {
			if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

// TestCheckLimits: what each kind of host says to --memory and
// --pids-limit, from its cgroup files.
func TestCheckLimits(t *testing.T) {
	const user = "user.slice/user-1000.slice/user@1000.service/app.slice"
	v2 := map[string]string{".": "cpu io memory pids", user: "cpu memory pids", user + "/run-1.scope": ""}
	v1 := map[string]string{"memory": "", "pids": "", "cpu": ""}
	mem, pids, both := Limits{Memory: 64 << 20}, Limits{Pids: 10}, Limits{Memory: 64 << 20, Pids: 10}
	yours := func(string) bool { return true }
	cases := []struct {
		name     string
		dirs     map[string]string
		unified  bool
		realRoot bool
		own      string
		writable func(string) bool
		limits   Limits
		want     string // "" is no problem
	}{
		{name: "root, v1", dirs: v1, realRoot: true, limits: both},
		{name: "root, v1 without pids", dirs: map[string]string{"memory": ""}, realRoot: true, limits: both, want: "the pids cgroup controller is not mounted at"},
		{name: "root, v2", dirs: v2, unified: true, realRoot: true, limits: both},
		{name: "root, v2 without memory", dirs: map[string]string{".": "cpu pids"}, unified: true, realRoot: true, limits: mem, want: `is not available in ROOT (its cgroup.controllers lists "cpu pids"): is it disabled`},
		{name: "rootless, v1", dirs: v1, limits: pids, want: "this host uses cgroup v1, which does not delegate controllers to unprivileged users: run stepexec as root"},
		{name: "rootless, v2 delegated", dirs: v2, unified: true, own: "/" + user + "/run-1.scope", writable: yours, limits: both},
		{name: "rootless, v2 in a login session", dirs: map[string]string{".": "memory pids", "user.slice/user-1000.slice/session-2.scope": ""}, unified: true,
			own: "/user.slice/user-1000.slice/session-2.scope", writable: func(string) bool { return false }, limits: mem,
			want: "RUN steps get their cgroup in ROOT/user.slice/user-1000.slice, beside this process's own (/user.slice/user-1000.slice/session-2.scope), and it is not delegated to you (not writable): run stepexec under systemd's user manager"},
		{name: "rootless, v2 delegated without pids", dirs: map[string]string{".": "memory pids", user: "cpu memory", user + "/run-1.scope": ""}, unified: true,
			own: "/" + user + "/run-1.scope", writable: yours, limits: pids, want: `the pids cgroup controller is not available in ROOT/` + user + ` (its cgroup.controllers lists "cpu memory"): ask for it in systemd's delegation of user@.service`},
		{name: "no limits, anywhere", dirs: v1, limits: Limits{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := fakeCgroups(t, c.dirs)
			h := cgroupHost{root: root, unified: c.unified, realRoot: c.realRoot, own: c.own, writable: c.writable}
			var err error
			if c.limits.set() {
				err = h.check(c.limits)
			}
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected problem: %v", err)
				}
				return
			}
			want := strings.ReplaceAll(c.want, "ROOT", root)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("got %v\nwant it to contain %q", err, want)
			}
		})
	}
}

package snapshot

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/runtime/userns"
)

// TestViewStep checks the read-only views a RUN step binds (View with ForStep), on
// one layer (overlay then needs an empty second lower dir) and on two. As
// real root the step's root sees the stored owners (0 is its root, 1000
// is 1000), can read root's 0600 file and cannot write; IDMapped says so.
// Rootless it is View: the stored ids, not marked idmapped. Either way
// Remove leaves no mount.
func TestViewStep(t *testing.T) {
	s, dir := openTestStore(t)
	ctx := context.Background()
	base := commitTree(t, s, "base", "", map[string]string{"etc/secret": "s\n", "home/u/f": "u\n"})
	for _, p := range []string{"home/u", "home/u/f"} {
		if err := os.Lchown(filepath.Join(diffDir(s, base.ID), p), 1000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(diffDir(s, base.ID), "etc/secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	top := commitTree(t, s, "top", base.ID, map[string]string{"top": "t\n"})
	sh, err := userns.StepShift()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, parent, want string }{
		{"one layer", base.ID, "0:0\n1000:1000\ns\nread-only\n"},
		{"two layers", top.ID, "0:0\n1000:1000\ns\nread-only\nt\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v, err := s.View(ctx, "view", tt.parent, ForStep())
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := s.Remove(ctx, "view"); err != nil {
					t.Fatal(err)
				}
				assertNoMountsUnder(t, dir)
			}()
			if v.IDMapped != (sh != nil) {
				t.Errorf("IDMapped = %v, want %v", v.IDMapped, sh != nil)
			}
			script := `stat -c %u:%g etc/secret home/u/f; cat etc/secret; (echo x > new) 2>/dev/null && echo writable || echo read-only; cat top 2>/dev/null || true`
			var out string
			if sh != nil {
				out = inStep(t, sh, boundForStep(t, v.Dir), script)
			} else {
				out = shell(t, v.Dir, script)
			}
			if normalize(out) != normalize(tt.want) {
				t.Errorf("the step saw %q, want %q", out, tt.want)
			}
		})
	}
}

// shell runs script with the host's sh in dir, as this process.
func shell(t *testing.T, dir, script string) string {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-ec", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%q: %v\n%s", script, err, out)
	}
	return string(out)
}

// boundForStep binds dir (under the store's 0700 directories) at a new
// directory a step's root can reach, as libcontainer's privileged side
// does when it opens a bind source for a step, until the test ends.
func boundForStep(t *testing.T, dir string) string {
	t.Helper()
	target, err := os.MkdirTemp("/run", "stepexec-viewstep-")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dir, target, "", unix.MS_BIND, ""); err != nil {
		os.Remove(target)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			t.Error(err)
		}
		os.Remove(target)
	})
	return target
}

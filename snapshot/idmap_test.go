package snapshot

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/configs"

	"github.com/stepexec/stepexec/runtime/userns"
)

// shiftOrSkip returns the process's userns.Shift, skipping unless real root.
func shiftOrSkip(t testing.TB) *userns.Shift {
	t.Helper()
	sh, err := userns.StepShift()
	if err != nil {
		t.Fatal(err)
	}
	if sh == nil {
		if os.Geteuid() == 0 && !userns.InUserNamespace() {
			t.Fatal("real root without a shift: this kernel cannot idmap overlay layers (see the warning above)")
		}
		t.Skip("snapshots are idmapped only as real root; in stepexec's user namespace ForStep changes nothing")
	}
	return sh
}

// inStep runs script with the host's sh in a new user namespace with the
// steps' maps, as the step's root, in dir: what a RUN step does, without
// the sandbox.
func inStep(t *testing.T, sh *userns.Shift, dir, script string) string {
	t.Helper()
	maps := func(m []configs.IDMap) []syscall.SysProcIDMap {
		var out []syscall.SysProcIDMap
		for _, e := range m {
			out = append(out, syscall.SysProcIDMap{ContainerID: int(e.ContainerID), HostID: int(e.HostID), Size: int(e.Size)})
		}
		return out
	}
	cmd := exec.Command("/bin/sh", "-ec", script)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: maps(sh.UIDs),
		GidMappings: maps(sh.GIDs),
		Credential:  &syscall.Credential{Uid: 0, Gid: 0},
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("step %q: %v\n%s", script, err, out)
	}
	return string(out)
}

// TestPrepareStepIDMapped checks, as real root, a snapshot prepared for a
// step: the step's root (a subordinate id of root's on the host) sees the
// files stored as uid 0 as its own and can change them; what it writes is
// stored with the image's ids (uid 0 stays 0, chown 1000 stores 1000);
// whiteouts and opaque directories are diffed as without idmapping; only
// the overlay is mounted while the snapshot lives, nothing once it is gone.
func TestPrepareStepIDMapped(t *testing.T) {
	sh := shiftOrSkip(t)
	s, dir := openTestStore(t)
	ctx := context.Background()
	base := commitTree(t, s, "base", "", map[string]string{
		"etc/passwd":   "root:x:0:0:root:/root:/bin/sh\n",
		"etc/secret":   "0600\n",
		"gone":         "x\n",
		"d/sub/a":      "a\n",
		"keep/k":       "k\n",
		"usr/share/id": "base\n",
	})
	if err := os.Chmod(filepath.Join(diffDir(s, base.ID), "etc/secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Prepare(ctx, "step", base.ID, ForStep())
	if err != nil {
		t.Fatal(err)
	}
	if !snap.IDMapped {
		t.Error("ForStep Prepare as real root: IDMapped is false")
	}
	if m := mountsUnder(t, dir); len(m) != 0 {
		t.Errorf("mounts under the store while the snapshot lives: %v, want none (steps' roots are in %s)", m, stepRootsBase)
	}
	if m := mountsUnder(t, s.view.roots.dir); len(m) != 2 || m[1] != snap.Dir {
		t.Errorf("mounts under the steps' roots %s: %v, want it and %s", s.view.roots.dir, m, snap.Dir)
	}
	uid, _ := sh.Root()
	out := inStep(t, sh, snap.Dir, `
cat /proc/self/uid_map
stat -c %u:%g . etc/passwd
cat etc/secret
echo more >> etc/passwd
echo new > etc/new
mkdir home && echo u > home/u && chown 1000:1001 home/u
rm gone
rm -r d && mkdir d && echo b > d/b
`)
	if got := normalize(out); got != normalize("0 "+itoa(uid)+" 65536\n0:0\n0:0\n0600\n") {
		t.Errorf("the step saw:\n%s", out)
	}

	c, err := s.Commit(ctx, "step")
	if err != nil {
		t.Fatal(err)
	}
	names, entries := readLayer(t, s, c.Layer.ID)
	want := map[string][2]int{ // name in the layer tar -> uid, gid
		"etc/":           {0, 0},
		"etc/passwd":     {0, 0},
		"etc/new":        {0, 0},
		"home/":          {0, 0},
		"home/u":         {1000, 1001},
		".wh.gone":       {0, 0},
		"d/":             {0, 0},
		"d/.wh..wh..opq": {0, 0},
		"d/b":            {0, 0},
	}
	if len(names) != len(want) {
		t.Errorf("layer entries %v, want the %d of %v", names, len(want), want)
	}
	for name, ids := range want {
		e, ok := entries[name]
		if !ok {
			t.Errorf("layer lacks %s (has %v)", name, names)
			continue
		}
		if e.hdr.Uid != ids[0] || e.hdr.Gid != ids[1] {
			t.Errorf("%s stored as %d:%d, want %d:%d", name, e.hdr.Uid, e.hdr.Gid, ids[0], ids[1])
		}
	}
	if got := string(entries["etc/passwd"].content); got != "root:x:0:0:root:/root:/bin/sh\nmore\n" {
		t.Errorf("etc/passwd = %q", got)
	}
	assertNoMountsUnder(t, dir)
}

// TestPrepareStepNoParent checks a parentless step snapshot (its empty
// lower dir lives in the snapshot dir) and that Remove leaves no mount.
func TestPrepareStepNoParent(t *testing.T) {
	sh := shiftOrSkip(t)
	s, dir := openTestStore(t)
	snap, err := s.Prepare(context.Background(), "first", "", ForStep())
	if err != nil {
		t.Fatal(err)
	}
	if out := inStep(t, sh, snap.Dir, `stat -c %u:%g .; echo x > f; ls -A`); normalize(out) != "0:0\nf\n" {
		t.Errorf("the step saw %q", out)
	}
	if err := s.Remove(context.Background(), "first"); err != nil {
		t.Fatal(err)
	}
	assertNoMountsUnder(t, dir)
}

// TestPrepareHostView checks that Prepare, as real root, still gives this
// process its own ids (an import writes through it), even after a step
// snapshot made the idmapped clones.
func TestPrepareHostView(t *testing.T) {
	shiftOrSkip(t)
	s, _ := openTestStore(t)
	ctx := context.Background()
	if _, err := s.Prepare(ctx, "step", "", ForStep()); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Prepare(ctx, "host", "")
	if err != nil {
		t.Fatal(err)
	}
	if snap.IDMapped {
		t.Error("Prepare gave an idmapped snapshot")
	}
	if err := os.WriteFile(filepath.Join(snap.Dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(snap.Dir, "f"), 7, 8); err != nil {
		t.Fatal(err)
	}
	c, err := s.Commit(ctx, "host")
	if err != nil {
		t.Fatal(err)
	}
	_, entries := readLayer(t, s, c.Layer.ID)
	if h := entries["f"].hdr; h == nil || h.Uid != 7 || h.Gid != 8 {
		t.Errorf("f stored as %+v, want 7:8", h)
	}
}

// BenchmarkStepIDMapped is BenchmarkStep for a step snapshot as real root:
// the file is written as the step's root through the idmapped overlay.
func BenchmarkStepIDMapped(b *testing.B) {
	sh := shiftOrSkip(b)
	s, _ := openTestStore(b)
	ctx := context.Background()
	parent := commitTree(b, s, "parent", "", baseTree)
	var prepare, commit time.Duration
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		snap, err := s.Prepare(ctx, "step", parent.ID, ForStep())
		prepare += time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		content := []byte(time.Now().String() + strings.Repeat("x", i%7))
		if err := sh.AsStepRoot(func() error { return os.WriteFile(filepath.Join(snap.Dir, "f"), content, 0o644) }); err != nil {
			b.Fatal(err)
		}
		lease, err := s.NewLease()
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		_, err = s.Commit(ctx, "step", WithLease(lease))
		commit += time.Since(t1)
		if err != nil {
			b.Fatal(err)
		}
		if got, err := lease.Release(); err != nil || len(got.Layers) != 1 {
			b.Fatalf("Release: %+v, %v", got, err)
		}
	}
	b.ReportMetric(float64(prepare.Nanoseconds())/float64(b.N), "prepare-ns/op")
	b.ReportMetric(float64(commit.Nanoseconds())/float64(b.N), "commit-ns/op")
}

func normalize(s string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "\n") + "\n"
}

func itoa(n int) string { return strconv.Itoa(n) }

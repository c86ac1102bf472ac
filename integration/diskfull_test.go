package integration

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stepexec/stepexec/internal/testenv"
)

// TestDiskFull puts the store (--root) on a small tmpfs, 64 MiB and 4,000
// inodes, and fills it during a RUN (dd until ENOSPC) and during the
// commit after a RUN that succeeded: with no bytes left for the layer's
// tar-split record, which Commit writes before it stores the layer; and
// with no inodes left, the RUN's files having taken them all and then
// given back K, so that the record fits and containers/storage's creation
// of the layer fails at one of its first steps (which one depends on K).
// Each time the build must fail naming the Dockerfile line and ENOSPC,
// leave nothing behind but the build cache's record of the step that
// completed (and its layer), get the space back, and the store must take
// the next build.
func TestDiskFull(t *testing.T) {
	testenv.NeedRoot(t, "to mount a tmpfs for the store")
	type diskCase struct {
		name   string
		run    string   // the RUN that fills the store's filesystem
		want   []string // in stderr
		commit bool     // the RUN succeeds: its commit fails
	}
	cases := []diskCase{
		{name: "during-run", run: "dd if=/dev/zero of=/big bs=1M",
			want: []string{"Dockerfile:3: RUN dd", "exit code 1", "No space left on device"}},
		{name: "commit-record", commit: true,
			run:  "mkdir /many && cd /many && seq 1 500 | xargs touch && (dd if=/dev/zero of=/big bs=1M 2>/dev/null; true)",
			want: []string{"Dockerfile:3: RUN mkdir", "tar-split.json: no space left on device"}},
	}
	for _, k := range []int{0, 1, 2, 3} {
		cases = append(cases, diskCase{name: fmt.Sprintf("commit-store-%d", k), commit: true,
			run:  fmt.Sprintf("mkdir /many && cd /many && (seq 1 5000 | xargs touch 2>/dev/null; true) && rm -f $(ls | head -n %d)", k),
			want: []string{"Dockerfile:3: RUN mkdir", "storing layer", "no space left on device"}})
	}
	forEachAccount(t, func(t *testing.T, a *account) {
		mountStoreTmpfs(t, a, "size=64m,nr_inodes=4000")
		if a.uid != 0 && !userXattrs(t, filepath.Dir(a.root)) {
			// tmpfs before Linux 6.6: the rootless store cannot be here,
			// and says why.
			r := a.run(t, "import", tarball)
			if r.code == 0 || !strings.Contains(r.stderr, "has no user xattrs") || !strings.Contains(r.stderr, a.root) {
				t.Fatalf("a rootless store on a filesystem without user xattrs: %s", r)
			}
			return
		}
		a.importAlpine(t)
		before := a.storeLayers(t)
		// A first build and the deletion of its layer create the store's
		// lazily made directories (overlay-layers/tmp, overlay/tempdirs).
		warm := a.writeContext(t, "warm-up", "FROM alpine\nRUN echo warm > /warm\n")
		a.mustRun(t, "build", "-t", "warm", warm)
		a.mustRun(t, "rmi", "warm")
		a.mustRun(t, "prune", "--all") // the cache kept the layer: delete one
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				files, space := storeFiles(t, a), freeSpace(t, a.root)
				ctxDir := a.writeContext(t, "full-"+c.name, "FROM alpine\nRUN echo first > /first\nRUN "+c.run+"\nRUN echo never > /never\n")
				r := a.run(t, "build", "--progress=plain", "-t", "full", ctxDir)
				if r.code == 0 {
					t.Fatalf("a build on a full disk succeeded: %s", r)
				}
				for _, w := range c.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
					}
				}
				if c.commit && !strings.Contains(r.stderr, "#3 command ran: exit code 0") {
					t.Errorf("the RUN itself failed: the commit was not reached:\n%s", r.stderr)
				}
				t.Logf("%s", lastLine(r.stderr))
				a.assertNothingLeft(t, before)
				checkStoreFiles(t, a, files)
				if out := a.mustRun(t, "images").stdout; strings.Contains(out, "localhost/full") {
					t.Errorf("a failed build left an image:\n%s", out)
				}
				if added, removed := diffSets(files, storeFiles(t, a)); len(added)+len(removed) > 0 {
					t.Errorf("after the next command the store's files still differ:\nadded %v\nremoved %v", added, removed)
				}
				waitForSpace(t, a.root, space)
				ok := a.writeContext(t, "after-"+c.name, "FROM alpine\nRUN echo ok > /ok\n")
				a.mustRun(t, "build", "-t", "after", ok)
				a.mustRun(t, "rmi", "after")
			})
		}
	})
}

// checkStoreFiles fails unless the store holds the files it held before
// a failed build, but for one kind of leftover: containers/storage leaves
// the lock of a temp dir it could not create (overlay-layers/tmp/lock-*
// or overlay/tempdirs/lock-*, no inode for the dir) and removes it itself
// when the store is next opened; the caller checks that it did.
func checkStoreFiles(t *testing.T, a *account, before map[string]bool) {
	t.Helper()
	added, removed := diffSets(before, storeFiles(t, a))
	var unexpected []string
	for _, p := range added {
		m1, _ := filepath.Match("overlay-layers/tmp/lock-*", p)
		m2, _ := filepath.Match("overlay/tempdirs/lock-*", p)
		if m1 || m2 {
			t.Logf("containers/storage left %s (it removes it on its next open)", p)
			continue
		}
		unexpected = append(unexpected, p)
	}
	if len(unexpected)+len(removed) > 0 {
		t.Errorf("the failed build changed the store's files:\nadded %v\nremoved %v", unexpected, removed)
	}
}

// mountStoreTmpfs mounts a tmpfs with opts beside a's --root and moves
// --root into it (the mount itself must not look like one of the store's).
func mountStoreTmpfs(t *testing.T, a *account, opts string) {
	t.Helper()
	dir := filepath.Join(filepath.Dir(a.root), "fs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755,"+opts); err != nil {
		t.Fatalf("mounting a tmpfs at %s: %v", dir, err)
	}
	// Registered after the account's own cleanup, so it runs before the
	// removal of its directories.
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	if err := os.Chown(dir, a.uid, a.gid); err != nil {
		t.Fatal(err)
	}
	a.root = filepath.Join(dir, "store")
}

// userXattrs reports whether dir's filesystem takes user xattrs.
func userXattrs(t *testing.T, dir string) bool {
	t.Helper()
	probe := filepath.Join(dir, ".xattr-probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(probe)
	err := syscall.Setxattr(probe, "user.stepexec.probe", []byte("1"), 0)
	if err != nil && !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Fatalf("probing user xattrs in %s: %v", dir, err)
	}
	return err == nil
}

// space is what a filesystem has free.
type space struct{ bytes, inodes uint64 }

func freeSpace(t *testing.T, dir string) space {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return space{st.Bavail * uint64(st.Bsize), st.Ffree}
}

// waitForSpace waits until dir's filesystem has about as much free as
// before (the kernel gives a removed snapshot's space back a moment
// later, not at once) and fails the test if it never does.
func waitForSpace(t *testing.T, dir string, before space) {
	t.Helper()
	const slackBytes, slackInodes = 256 << 10, 16 // lock files, metadata rewritten
	deadline := time.Now().Add(10 * time.Second)
	for {
		now := freeSpace(t, dir)
		if now.bytes+slackBytes >= before.bytes && now.inodes+slackInodes >= before.inodes {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store's filesystem did not get its space back: %d bytes and %d inodes free, %d and %d before the build",
				now.bytes, now.inodes, before.bytes, before.inodes)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// storeFiles lists every path in a's store, as seen from the host.
func storeFiles(t *testing.T, a *account) map[string]bool {
	t.Helper()
	cached := a.cachedFiles(t)
	files := map[string]bool{}
	err := filepath.WalkDir(a.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(a.root, p)
		if cached[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		files[rel] = true
		return nil
	})
	if err != nil {
		t.Fatalf("listing the store: %v", err)
	}
	return files
}

// cachedFiles are the store paths of what the build cache keeps: its
// records and their layers (which the steps that completed before a
// failure leave, by design).
func (a *account) cachedFiles(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for r, id := range a.cacheRecords(t) {
		rel, _ := filepath.Rel(a.root, r)
		out[rel] = true
		out[filepath.Join("overlay", id)] = true
		out[filepath.Join("overlay-layers", id+".tar-split.gz")] = true
		if link, err := os.ReadFile(filepath.Join(a.root, "overlay", id, "link")); err == nil {
			out[filepath.Join("overlay", "l", strings.TrimSpace(string(link)))] = true
		}
	}
	return out
}

// diffSets returns the sorted members of after not in before, and the
// other way round.
func diffSets(before, after map[string]bool) (added, removed []string) {
	for p := range after {
		if !before[p] {
			added = append(added, p)
		}
	}
	for p := range before {
		if !after[p] {
			removed = append(removed, p)
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	return added, removed
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

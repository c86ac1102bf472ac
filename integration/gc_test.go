package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stepexec/stepexec/internal/testenv"
)

// TestRmiOfTheBaseDuringABuild removes the image a running build stands
// on: rmi untags it at once, the build carries on (no "layer not known"),
// and the image and its layers go when the build is done, as far as
// nothing else uses them. A prune meanwhile leaves them alone too.
func TestRmiOfTheBaseDuringABuild(t *testing.T) {
	cases := []struct {
		name, last string
		fails      bool
	}{
		{name: "build-succeeds", last: "RUN test -f /base && echo child > /child"},
		{name: "build-fails", last: "RUN exit 7", fails: true},
	}
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		alpineOnly := a.storeLayers(t)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				a.mustRun(t, "build", "-t", "gcbase", a.writeContext(t, "gcbase", "FROM alpine\nRUN echo base > /base\n"))
				// The step waits (a minute at most) for the file go the test
				// writes into the context once rmi and prune are done: a
				// fixed sleep was over before them on a slow machine (TCG).
				ctxDir := a.writeContext(t, "gcchild-"+c.name, "FROM gcbase\nRUN --mount=type=bind,target=/ctx echo "+stepMarker+
					" >/dev/null; for i in $(seq 600); do [ -e /ctx/go ] && break; sleep 0.1; done\n"+c.last+"\n")
				b := a.start(t, "build", "--progress=plain", "-t", "gcchild", ctxDir)
				b.waitFor(t, "sandbox created", 1)

				r := a.mustRun(t, "rmi", "gcbase")
				if !strings.Contains(r.stdout, "Untagged: localhost/gcbase:latest") || strings.Contains(r.stdout, "Deleted:") || !strings.Contains(r.stderr, "in use by a running build") {
					t.Errorf("rmi of the base of a running build: want it untagged and kept, got %s", r)
				}
				if out := a.mustRun(t, "images").stdout; strings.Contains(out, "localhost/gcbase") {
					t.Errorf("gcbase still listed after rmi:\n%s", out)
				}
				// Nor may prune take it (nameless now) from under the build
				// (its cache entries may go: the build holds their layers).
				if r := a.mustRun(t, "prune", "--all"); strings.Contains(r.stdout, "Deleted image") || strings.Contains(r.stdout, "Deleted layer") {
					t.Errorf("prune during the build deleted what it stands on: %s", r)
				}
				writeFileAs(t, a, filepath.Join(ctxDir, "go"), "")

				code := b.wait(t)
				stderr := b.Stderr()
				if strings.Contains(stderr, "not known") || strings.Contains(stderr, "unknown") {
					t.Errorf("the build lost its base's layers:\n%s", stderr)
				}
				if c.fails && (code == 0 || !strings.Contains(stderr, "exit code 7")) {
					t.Errorf("want the build to fail at its last step, got exit %d:\n%s", code, stderr)
				}
				if !c.fails && code != 0 {
					t.Fatalf("the build failed (exit %d) after rmi of its base:\n%s", code, stderr)
				}
				if out := a.mustRun(t, "images").stdout; strings.Contains(out, "<none>") {
					t.Errorf("the removed base outlived the build:\n%s", out)
				}
				st := testenv.CheckStore(t, a.root)
				if u := st.Unreferenced(); len(u) > 0 {
					t.Errorf("layers no image uses after the build: %v", u)
				}
				if !c.fails {
					// alpine's, gcbase's, the sleeping RUN's (empty: BuildKit
					// commits one for every RUN) and the last RUN's.
					if got := a.inspect(t, "gcchild").RootFS.DiffIDs; len(got) != 4 {
						t.Errorf("gcchild has %d layers, want alpine's, gcbase's and its two RUNs'", len(got))
					}
					a.mustRun(t, "rmi", "gcchild")
				}
				// What stays is the build cache's: its entries go with
				// prune --all, and their layers with them.
				a.mustRun(t, "prune", "--all")
				if got := a.storeLayers(t); !slices.Equal(got, alpineOnly) {
					t.Errorf("layers left: %v, want alpine's %v", got, alpineOnly)
				}
			})
		}
	})
}

// TestKilledBuildKeepsItsCompletedSteps SIGKILLs a build after a RUN
// wrote 100 MB and was committed, while the next RUN sleeps: the
// completed step stays cached (a rebuild says CACHED for it), the killed
// step leaves nothing the next command does not remove, and once the cache
// entry is pruned the 100 MB go.
//
// The sleep is short: a rootless step survives the SIGKILL of its builder
// until it exits by itself (a RUN's fate on SIGKILL is not this test's
// subject), and killGroup waits for that.
func TestKilledBuildKeepsItsCompletedSteps(t *testing.T) {
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		before := a.storeLayers(t)
		usage := diskUsage(t, a.root)
		ctxDir := a.writeContext(t, "killed", "FROM alpine\nRUN head -c 104857600 /dev/urandom > /big\nRUN echo "+stepMarker+" >/dev/null; sleep 5\n")
		b := a.start(t, "build", "--progress=plain", ctxDir)
		b.waitFor(t, "sandbox created", 2)
		if got := a.storeLayers(t); len(got) != len(before)+1 {
			t.Fatalf("want the 100 MB layer committed, store has %v", got)
		}
		if grown := diskUsage(t, a.root) - usage; grown < 100<<20 {
			t.Fatalf("the store grew by %d bytes, want 100 MiB", grown)
		}
		// The sleeping step's cgroups (real root) are not this test's
		// subject: a SIGKILL during a RUN is.
		pids := b.killGroup(t, a)
		t.Cleanup(func() { removeCgroups(stepCgroups(pids)) })

		a.mustRun(t, "images")
		st := testenv.CheckStore(t, a.root)
		if u := st.Unreferenced(); len(u) > 0 {
			t.Errorf("the killed build left layers nothing keeps: %v", u)
		}
		a.assertNothingLeft(t, before)
		a.writeContext(t, "killed", "FROM alpine\nRUN head -c 104857600 /dev/urandom > /big\nRUN true\n")
		if s := a.build(t, ctxDir); !slices.Equal(s.cached, []string{"RUN head -c 104857600 /dev/urandom > /big"}) {
			t.Errorf("after the kill, the completed step is not CACHED: cached %q, ran %q", s.cached, s.ran)
		}
		a.mustRun(t, "prune", "--all")
		if got := a.storeLayers(t); !slices.Equal(got, before) {
			t.Errorf("after prune --all: layers %v, want %v", got, before)
		}
		if grown := diskUsage(t, a.root) - usage; grown > 10<<20 {
			t.Errorf("after prune --all the store holds %d bytes more than before the build", grown)
		}
		a.inspect(t, "alpine")
	})
}

// TestPrune removes what the automatic cleanup cannot know of, here a
// killed build's layer whose owner directory was deleted by hand, and with
// --all the images that lost their names; never an image's layer.
func TestPrune(t *testing.T) {
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		a.mustRun(t, "build", "-t", "keep", a.writeContext(t, "keep", "FROM alpine\nRUN echo keep > /keep\n"))
		a.mustRun(t, "build", "-t", "dang", a.writeContext(t, "dang1", "FROM alpine\nRUN echo one > /dang\n"))
		withDangling := a.storeLayers(t)
		a.mustRun(t, "build", "-t", "dang", a.writeContext(t, "dang2", "FROM alpine\nRUN echo two > /dang\n"))
		kept := a.storeLayers(t)

		b := a.start(t, "build", "--progress=plain", a.writeContext(t, "orphan", "FROM alpine\nRUN echo orphan > /orphan\nRUN echo "+stepMarker+" >/dev/null; sleep 5\n"))
		b.waitFor(t, "sandbox created", 2)
		// The sleeping step's cgroups (real root) are not this test's
		// subject: a SIGKILL during a RUN is.
		pids := b.killGroup(t, a)
		t.Cleanup(func() { removeCgroups(stepCgroups(pids)) })
		a.removeOwnerDirs(t)
		// The killed build's completed step is cached; as if it had been
		// killed between its commit and its cache record, drop the record.
		a.dropCacheRecords(t, "orphan")
		a.mustRun(t, "images")
		orphans := testenv.CheckStore(t, a.root).Unreferenced()
		if len(orphans) != 1 {
			t.Fatalf("want the killed build's layer as the one orphan, got %v", orphans)
		}

		r := a.mustRun(t, "prune")
		if !strings.Contains(r.stdout, "Deleted layer: "+orphans[0]) || !strings.Contains(r.stdout, "Total reclaimed space:") || strings.Contains(r.stdout, "Deleted image") {
			t.Errorf("prune should name the orphan and the space, and delete no image: %s", r)
		}
		if got := a.storeLayers(t); !slices.Equal(got, kept) {
			t.Errorf("after prune: layers %v, want %v", got, kept)
		}
		if out := a.mustRun(t, "images").stdout; !strings.Contains(out, "<none>") || !strings.Contains(out, "localhost/keep") {
			t.Errorf("prune without --all must keep every image:\n%s", out)
		}

		r = a.mustRun(t, "prune", "--all")
		if strings.Count(r.stdout, "Deleted image: sha256:") != 1 || strings.Count(r.stdout, "Deleted layer: ") != 1 {
			t.Errorf("prune --all should delete the nameless dang and its layer: %s", r)
		}
		if out := a.mustRun(t, "images").stdout; strings.Contains(out, "<none>") || !strings.Contains(out, "localhost/dang") || !strings.Contains(out, "localhost/keep") {
			t.Errorf("after prune --all:\n%s", out)
		}
		st := testenv.CheckStore(t, a.root)
		if u := st.Unreferenced(); len(u) > 0 {
			t.Errorf("unreferenced layers after prune --all: %v", u)
		}
		if got := len(a.storeLayers(t)); got != len(withDangling) {
			t.Errorf("after prune --all: %d layers, want %d (alpine, keep, dang)", got, len(withDangling))
		}
		if r := a.mustRun(t, "prune", "--all"); strings.Contains(r.stdout, "Deleted") {
			t.Errorf("a second prune deleted more: %s", r)
		}
		a.mustRun(t, "build", "-t", "onkeep", a.writeContext(t, "onkeep", "FROM keep\nRUN test -f /keep\n"))
	})
}

// dropCacheRecords deletes the build cache records of the steps whose
// instruction mentions word (their history is not in the record: the
// layer's /WORD file is looked for).
func (a *account) dropCacheRecords(t *testing.T, word string) {
	t.Helper()
	dropped := 0
	for r, layer := range a.cacheRecords(t) {
		if fileExists(filepath.Join(a.root, "overlay", layer, "diff", word)) {
			if err := os.Remove(r); err != nil {
				t.Fatal(err)
			}
			dropped++
		}
	}
	if dropped != 1 {
		t.Fatalf("dropped %d cache records for /%s, want 1", dropped, word)
	}
}

// removeOwnerDirs deletes the store's snapshot owner directories, as one
// might by hand, detaching what a killed root build left mounted first.
func (a *account) removeOwnerDirs(t *testing.T) {
	t.Helper()
	snaps := filepath.Join(a.root, "stepexec", "snapshots")
	for _, m := range mountsUnder(snaps) {
		if out, err := exec.Command("umount", m).CombinedOutput(); err != nil {
			t.Fatalf("umount %s: %v %s", m, err, out)
		}
	}
	// As the user itself (not root), overlay's work/work dirs (mode 0, of
	// the user's namespace) go only from inside its namespace.
	a.removeAll(t, snaps)
	if _, err := os.Lstat(snaps); !os.IsNotExist(err) {
		t.Fatalf("could not remove %s: %v", snaps, err)
	}
}

// mountsUnder lists the host's mount points below dir.
func mountsUnder(dir string) []string {
	raw, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

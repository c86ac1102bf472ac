package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepexec/stepexec/internal/testenv"
)

// TestSIGKILLDuringCommitOrExport SIGKILLs the builder (or its process
// group) at points spread over a 100 MB layer's commit and over an OCI
// export of it: whatever the kill interrupted (hashing, the move into the
// store's staging area, a half-recorded layer, the image, the export), the
// next command leaves no process, mount, snapshot, staging dir, orphaned
// layer or cgroup, and the store is consistent.
func TestSIGKILLDuringCommitOrExport(t *testing.T) {
	phases := []struct {
		name     string
		run      string // makes the 100 MB
		from, to string // the progress lines around the phase
		export   bool
	}{
		// Many files make the commit longer than the hashing alone.
		{name: "commit", run: "head -c 100000000 /dev/urandom > /big && mkdir /many && cd /many && seq 5000 | xargs touch",
			from: "command ran: exit code 0", to: "layer sha256:"},
		{name: "export", run: "head -c 100000000 /dev/urandom > /big",
			from: "naming to", to: "exporting OCI image", export: true},
	}
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		for _, ph := range phases {
			t.Run(ph.name, func(t *testing.T) {
				build := func(i int) (*background, string) {
					name := fmt.Sprintf("gckill-%s-%d", ph.name, i)
					dest := filepath.Join(a.work, name+"-oci")
					args := []string{"build", "--progress=plain", "-t", "gckill"}
					if ph.export {
						args = append(args, "--output", "type=oci,dest="+dest)
					}
					// A layer of its own each time: nothing is reused.
					df := fmt.Sprintf("FROM alpine\nRUN echo %s-$(date +%%s%%N) > /unique && %s\n", name, ph.run)
					return a.start(t, append(args, a.writeContext(t, name, df))...), dest
				}
				b, _ := build(0)
				start := b.waitFor(t, ph.from, 1)
				span := b.waitFor(t, ph.to, 1).Sub(start)
				if code := b.wait(t); code != 0 {
					t.Fatalf("the uninterrupted build failed:\n%s", b.Stderr())
				}
				t.Logf("the %s took %v", ph.name, span)

				fracs := []float64{0.2, 0.6, 0.9, 1.0}
				interrupted := 0
				for i, frac := range fracs {
					b, dest := build(i + 1)
					at := b.waitFor(t, ph.from, 1)
					time.Sleep(time.Until(at.Add(time.Duration(frac * float64(span)))))
					// The whole group (a CI runner's kill), or just the
					// process the user started.
					kill, whom := b.killGroup, "the group"
					if i%2 == 1 {
						kill, whom = b.killLeader, "the builder alone"
					}
					pids := kill(t, a)
					if end, done := b.printedAt(ph.to); done {
						// Too late: the phase was quicker this time.
						span = min(span, end.Sub(at))
					}
					// A builder that got to Close removed its owner dir.
					if owners, _ := filepath.Glob(filepath.Join(a.root, "stepexec", "snapshots", "*")); len(owners) > 0 {
						interrupted++
					}
					t.Logf("killed %s at %.0f%% (%v): %s; output: %s", whom, frac*100, span, describeStore(a.root), describeOutput(dest))
					a.assertNextCommandCleansUp(t, pids)
					if ph.export {
						a.inspect(t, "gckill") // stored before the export: intact
					}
				}
				t.Logf("%d of %d kills interrupted the build", interrupted, len(fracs))
				if interrupted == 0 {
					t.Errorf("no kill came before the build was done")
				}
			})
		}
	})
}

// assertNextCommandCleansUp runs `stepexec images` after a kill of the
// processes pids and checks what is left: no layer without an image, a
// consistent store, no step cgroup of theirs, and assertNothingLeft's
// processes, temp dirs, snapshots and mounts. (It does not compare
// layers with an earlier list: a kill may come after the image.)
func (a *account) assertNextCommandCleansUp(t *testing.T, pids []int) {
	t.Helper()
	a.mustRun(t, "images")
	st := testenv.CheckStore(t, a.root)
	if u := st.Unreferenced(); len(u) > 0 {
		t.Errorf("layers no image uses survived the next command: %v", u)
	}
	if cg := stepCgroups(pids); len(cg) > 0 {
		t.Errorf("cgroups left: %v", cg)
		removeCgroups(cg)
	}
	a.assertNothingLeft(t, a.storeLayers(t))
}

// describeStore says what a kill left in the store, before anything
// cleans up.
func describeStore(root string) string {
	st, err := testenv.ReadStore(root)
	if err != nil {
		return err.Error()
	}
	incomplete := 0
	for _, l := range st.Layers {
		if l.Incomplete() {
			incomplete++
		}
	}
	staging, _ := os.ReadDir(filepath.Join(root, "overlay", "staging"))
	owners, _ := filepath.Glob(filepath.Join(root, "stepexec", "snapshots", "*"))
	return fmt.Sprintf("%d layers (%d incomplete, %d unreferenced), %d images, %d staging dirs, %d owner dirs",
		len(st.Layers), incomplete, len(st.Unreferenced()), len(st.Images), len(staging), len(owners))
}

// describeOutput says what a killed export left at dest.
func describeOutput(dest string) string {
	raw, err := os.ReadFile(filepath.Join(dest, "index.json"))
	if os.IsNotExist(err) {
		if fileExists(dest) {
			return dest + " without index.json"
		}
		return "none"
	}
	var idx struct{ Manifests []json.RawMessage }
	if err := json.Unmarshal(raw, &idx); err != nil {
		return "unreadable index.json: " + err.Error()
	}
	blobs, _ := os.ReadDir(filepath.Join(dest, "blobs", "sha256"))
	var names []string
	for _, b := range blobs {
		names = append(names, b.Name()[:min(12, len(b.Name()))])
	}
	return fmt.Sprintf("a layout with %d manifests, blobs %s", len(idx.Manifests), strings.Join(names, " "))
}

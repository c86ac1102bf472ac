package snapshot

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.podman.io/storage"

	"github.com/stepexec/stepexec/internal/testenv"
)

// runAndKillHelper runs the test binary as a store user (runKilledHelper)
// on the store in root, SIGKILLs it once it is ready and returns its
// snapshot's merged dir and the layer it committed, if any.
func runAndKillHelper(t *testing.T, root string, env ...string) (merged, made string) {
	t.Helper()
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+root), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	cmd.Process.Kill()
	cmd.Wait()
	f := strings.Fields(line)
	if err != nil || len(f) < 2 || f[0] != "ready" {
		t.Fatalf("helper did not get ready: %q %v", line, err)
	}
	if len(f) > 2 {
		made = f[2]
	}
	return f[1], made
}

// fakeOwner makes the owner directory of another, live stepexec process
// holding layers in a lease journal and a snapshot's parent file;
// calling the returned func makes that process "die" (frees its lock).
func fakeOwner(t *testing.T, s *Store, journal []string, snapshotParent string) func() {
	t.Helper()
	dir := filepath.Join(filepath.Dir(s.ownerDir), "other-process")
	for _, d := range []string{filepath.Join(dir, leasesDir), filepath.Join(dir, "snap")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	lock, err := lockFile(filepath.Join(dir, "lock"), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, leasesDir, "l"), []byte(strings.Join(journal, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "snap", parentFile), []byte(snapshotParent), 0o600); err != nil {
		t.Fatal(err)
	}
	return func() { lock.Close() }
}

func hasLayer(s *Store, id string) bool {
	_, err := s.store.Layer(id)
	return err == nil
}

// putImage stores an image record whose top layer is top, as any tool may.
func putImage(t *testing.T, s *Store, top string, names []string, flags map[string]any) string {
	t.Helper()
	img, err := s.store.CreateImage("", names, top, "", &storage.ImageOptions{Flags: flags})
	if err != nil {
		t.Fatal(err)
	}
	return img.ID
}

func commitIn(t *testing.T, s *Store, lease *Lease, key, parent string, tree map[string]string) Layer {
	t.Helper()
	ctx := context.Background()
	snap, err := s.Prepare(ctx, key, parent)
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, snap.Dir, tree)
	c, err := s.Commit(ctx, key, WithLease(lease))
	if err != nil || c.Empty {
		t.Fatalf("Commit %s: %+v, %v", key, c, err)
	}
	return c.Layer
}

// imageOf commits tree on parent as an image's layer (names may be nil),
// in a lease that ends once the image holds it.
func imageOf(t *testing.T, s *Store, key, parent string, tree map[string]string, names []string, flags map[string]any) (Layer, string) {
	t.Helper()
	lease, err := s.NewLease()
	if err != nil {
		t.Fatal(err)
	}
	l := commitIn(t, s, lease, key, parent, tree)
	img := putImage(t, s, l.ID, names, flags)
	if got, err := lease.Release(); err != nil || len(got.Layers) > 0 {
		t.Fatalf("Release after putting image %s: %+v, %v", img, got, err)
	}
	return l, img
}

func TestReleaseDeletesWhatNothingKeeps(t *testing.T) {
	s, dir := openTestStore(t)
	lease, err := s.NewLease()
	if err != nil {
		t.Fatal(err)
	}
	base := commitIn(t, s, lease, "base", "", baseTree)
	kept := commitIn(t, s, lease, "kept", base.ID, map[string]string{"k": "k"})
	mid := commitIn(t, s, lease, "mid", base.ID, map[string]string{"m": "m"})
	top := commitIn(t, s, lease, "top", mid.ID, map[string]string{"t": "t"})
	putImage(t, s, kept.ID, []string{"localhost/kept:latest"}, nil)
	if got, err := s.Layer(top.ID); err != nil || got != top {
		t.Errorf("Layer(%s) = %+v, %v; want %+v", top.ID, got, err, top)
	}
	ls, err := s.Layers()
	if err != nil || len(ls) != 4 {
		t.Errorf("Layers() = %d layers, %v; want 4", len(ls), err)
	}

	got, err := lease.Release()
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Layers) != 2 || got.Layers[0].ID != top.ID || got.Layers[1].ID != mid.ID {
		t.Errorf("Release deleted %+v; want top, then mid", got.Layers)
	}
	if got.Bytes() != top.Size+mid.Size {
		t.Errorf("Bytes() = %d, want %d", got.Bytes(), top.Size+mid.Size)
	}
	for id, want := range map[string]bool{base.ID: true, kept.ID: true, mid.ID: false, top.ID: false} {
		if hasLayer(s, id) != want {
			t.Errorf("layer %s present = %v after Release, want %v", id, !want, want)
		}
	}
	if again, err := lease.Release(); err != nil || len(again.Layers) > 0 {
		t.Errorf("second Release: %+v, %v", again, err)
	}
	if _, err := lease.Hold(func() (string, error) { return base.ID, nil }); err == nil {
		t.Error("Hold on a released lease succeeded")
	}
	testenv.CheckStore(t, filepath.Join(dir, "graph"))
}

// holding returns a new lease that holds layer id.
func holding(t *testing.T, s *Store, id string) *Lease {
	t.Helper()
	l, err := s.NewLease()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Hold(func() (string, error) { return id, nil }); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestReleaseCollectsOnlyWhatItMade: a lease that only held layers that
// were there before (a fully cached build: its base and cache hits) ends
// without a collection, even when one of them has lost what kept it
// meanwhile: that one is the next prune's.
func TestReleaseCollectsOnlyWhatItMade(t *testing.T) {
	s, _ := openTestStore(t)
	maker, err := s.NewLease()
	if err != nil {
		t.Fatal(err)
	}
	base := commitIn(t, s, maker, "base", "", baseTree)
	unkept := commitIn(t, s, maker, "unkept", base.ID, map[string]string{"u": "u"})
	putImage(t, s, unkept.ID, []string{"localhost/unkept:latest"}, nil)
	if _, err := maker.Release(); err != nil {
		t.Fatal(err)
	}
	user := holding(t, s, unkept.ID)
	img, err := s.store.Image("localhost/unkept:latest")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteImage(img.ID); err != nil { // kept: held
		t.Fatal(err)
	}
	// DeleteImage queued the image: this Release collects it, as before.
	if got, err := user.Release(); err != nil || len(got.Layers) != 2 {
		t.Fatalf("Release after an rmi of the held image: %+v, %v; want its 2 layers", got, err)
	}

	// A cache entry's layer whose entry goes (a prune of the cache) while
	// a build holds the layer: the build's Release leaves it to the next
	// prune.
	mk, err := s.NewLease()
	if err != nil {
		t.Fatal(err)
	}
	cached := commitIn(t, s, mk, "cached", "", map[string]string{"c": "c"})
	dir, err := s.RefsDir("cache")
	if err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(dir, "entry")
	if err := os.WriteFile(ref, []byte(`{"layer":"`+cached.ID+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := mk.Release(); err != nil {
		t.Fatal(err)
	}
	holder := holding(t, s, cached.ID)
	if err := os.Remove(ref); err != nil {
		t.Fatal(err)
	}
	if got, err := holder.Release(); err != nil || len(got.Layers) != 0 {
		t.Errorf("Release of a lease that made nothing: %+v, %v; want nothing collected", got, err)
	}
	if !hasLayer(s, cached.ID) {
		t.Fatal("Release deleted a layer it did not make")
	}
	if got, err := s.Prune(PruneOptions{}); err != nil || len(got.Layers) != 1 || got.Layers[0].ID != cached.ID {
		t.Errorf("Prune: %+v, %v; want the layer nothing keeps", got, err)
	}
}

func TestCollectionSparesOtherProcessesAndTools(t *testing.T) {
	s, dir := openTestStore(t)
	lease, err := s.NewLease()
	if err != nil {
		t.Fatal(err)
	}
	base := commitIn(t, s, lease, "base", "", baseTree)
	journaled := commitIn(t, s, lease, "journaled", base.ID, map[string]string{"j": "j"})
	underSnap := commitIn(t, s, lease, "snap", base.ID, map[string]string{"s": "s"})
	withChild := commitIn(t, s, lease, "child", base.ID, map[string]string{"c": "c"})
	// Another tool's layers: one on ours, one alone; neither is ours to delete.
	foreign, _, err := s.store.PutLayer("", withChild.ID, nil, "", false, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	alone, _, err := s.store.PutLayer("", "", nil, "", false, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	die := fakeOwner(t, s, []string{journaled.ID}, underSnap.ID)
	if _, err := lease.Release(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{base.ID, journaled.ID, underSnap.ID, withChild.ID, foreign.ID, alone.ID} {
		if !hasLayer(s, id) {
			t.Errorf("layer %s deleted while kept", id)
		}
	}

	// Once the other process is dead, what it held is garbage to prune.
	die()
	got, err := s.Prune(PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range got.Layers {
		ids = append(ids, l.ID)
	}
	if len(ids) != 2 || !strings.Contains(strings.Join(ids, ","), journaled.ID) || !strings.Contains(strings.Join(ids, ","), underSnap.ID) {
		t.Errorf("Prune deleted %v; want the dead process's %s and %s", ids, journaled.ID, underSnap.ID)
	}
	for _, id := range []string{base.ID, withChild.ID, foreign.ID, alone.ID} {
		if !hasLayer(s, id) {
			t.Errorf("Prune deleted layer %s: another tool's, or under one", id)
		}
	}
	testenv.CheckStore(t, filepath.Join(dir, "graph"))
}

func TestOpenCollectsAKilledProcesssLayers(t *testing.T) {
	root := t.TempDir()
	opts := Options{Root: filepath.Join(root, "graph"), RunRoot: filepath.Join(root, "run")}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	base := commitIn(t, s, nil, "base", "", baseTree)
	putImage(t, s, base.ID, []string{"localhost/base:latest"}, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	_, made := runAndKillHelper(t, root, helperParentEnv+"="+base.ID)
	st, err := testenv.ReadStore(opts.Root)
	if err != nil || len(st.Unreferenced()) != 1 || st.Unreferenced()[0] != made {
		t.Fatalf("the killed helper's layer %s is not the one orphan: %v, %v", made, st.Unreferenced(), err)
	}
	s, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if hasLayer(s, made) || !hasLayer(s, base.ID) {
		t.Errorf("after Open: killed process's layer present %v, image's layer present %v", hasLayer(s, made), hasLayer(s, base.ID))
	}
	got, err := s.Prune(PruneOptions{})
	if err != nil || len(got.Layers) != 1 || got.Layers[0].ID != made {
		t.Errorf("Prune reports %+v, %v; want what Open collected, %s", got, err, made)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st = testenv.CheckStore(t, opts.Root)
	if u := st.Unreferenced(); len(u) > 0 {
		t.Errorf("unreferenced layers left: %v", u)
	}
	if q, _ := filepath.Glob(filepath.Join(opts.Root, "stepexec", gcDirName, "*", "*")); len(q) > 0 {
		t.Errorf("collection queues not emptied: %v", q)
	}
}

func TestDeleteImageKeepsWhatABuildHolds(t *testing.T) {
	s, dir := openTestStore(t)
	base, _ := imageOf(t, s, "base", "", baseTree, []string{"localhost/base:latest"}, nil)
	own, img := imageOf(t, s, "own", base.ID, map[string]string{"o": "o"}, []string{"localhost/app:latest"}, nil)
	build, err := s.NewLease()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := build.Hold(func() (string, error) { return own.ID, nil }); err != nil {
		t.Fatal(err)
	}

	kept, err := s.DeleteImage(img)
	if err != nil || !kept {
		t.Fatalf("DeleteImage of an image a build holds: kept %v, %v", kept, err)
	}
	if si, err := s.store.Image(img); err != nil || len(si.Names) != 0 || !hasLayer(s, own.ID) {
		t.Errorf("held image: want it nameless with its layer; got %+v, %v, layer %v", si, err, hasLayer(s, own.ID))
	}
	// The build ends: the image goes, and its own layer with it.
	got, err := build.Release()
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Images) != 1 || got.Images[0] != img || len(got.Layers) != 1 || got.Layers[0].ID != own.ID {
		t.Errorf("Release deleted %+v; want image %s and layer %s", got, img, own.ID)
	}
	if _, err := s.store.Image(img); err == nil || hasLayer(s, own.ID) || !hasLayer(s, base.ID) {
		t.Errorf("after the build: image there %v, its layer %v, base image's layer %v", err == nil, hasLayer(s, own.ID), hasLayer(s, base.ID))
	}

	// Unheld, the image and its own layer go at once.
	other, img := imageOf(t, s, "other", base.ID, map[string]string{"x": "x"}, []string{"localhost/other:latest"}, nil)
	if kept, err := s.DeleteImage(img); err != nil || kept || hasLayer(s, other.ID) {
		t.Errorf("DeleteImage of an unused image: kept %v, %v, layer left %v", kept, err, hasLayer(s, other.ID))
	}
	testenv.CheckStore(t, filepath.Join(dir, "graph"))
}

func TestPruneDanglingImages(t *testing.T) {
	s, _ := openTestStore(t)
	base, _ := imageOf(t, s, "base", "", baseTree, []string{"localhost/base:latest"}, nil)
	ours, dangling := imageOf(t, s, "ours", base.ID, map[string]string{"o": "o"}, nil, map[string]any{MadeFlag: true})
	// Say, buildah's cached step.
	theirs, foreign := imageOf(t, s, "theirs", base.ID, map[string]string{"t": "t"}, nil, nil)

	if got, err := s.Prune(PruneOptions{}); err != nil || len(got.Images)+len(got.Layers) > 0 {
		t.Errorf("Prune without DanglingImages deleted %+v, %v", got, err)
	}
	got, err := s.Prune(PruneOptions{DanglingImages: true})
	if err != nil || len(got.Images) != 1 || got.Images[0] != dangling || len(got.Layers) != 1 || got.Layers[0].ID != ours.ID {
		t.Errorf("Prune(DanglingImages) = %+v, %v; want image %s with layer %s", got, err, dangling, ours.ID)
	}
	if _, err := s.store.Image(foreign); err != nil || !hasLayer(s, theirs.ID) {
		t.Errorf("another tool's nameless image was deleted: %v", err)
	}
}

// TestHoldRacesDeleteImage runs rmi of a build's base while the build
// looks it up: rmi waits until the build holds the layer, and keeps it
// until the build ends. rmi done before the lookup makes the lookup fail.
func TestHoldRacesDeleteImage(t *testing.T) {
	s, _ := openTestStore(t)
	base, _ := imageOf(t, s, "base", "", baseTree, []string{"localhost/base:latest"}, nil)
	for i, rmiFirst := range []bool{false, true} {
		top, img := imageOf(t, s, "k", base.ID, map[string]string{"f": strings.Repeat("x", i+1)}, []string{"localhost/race:latest"}, nil)
		lease, err := s.NewLease()
		if err != nil {
			t.Fatal(err)
		}
		if rmiFirst {
			if kept, err := s.DeleteImage(img); err != nil || kept {
				t.Fatalf("DeleteImage: kept %v, %v", kept, err)
			}
		}
		looked := make(chan struct{})
		rmi := make(chan bool, 1)
		if !rmiFirst {
			go func() {
				<-looked
				kept, err := s.DeleteImage(img)
				if err != nil {
					t.Error(err)
				}
				rmi <- kept
			}()
		}
		_, err = lease.Hold(func() (string, error) {
			si, err := s.store.Image("localhost/race:latest")
			close(looked)
			if err != nil {
				return "", err
			}
			time.Sleep(50 * time.Millisecond) // rmi runs now, unless it waits
			return si.TopLayer, nil
		})
		switch {
		case rmiFirst && !errors.Is(err, storage.ErrImageUnknown):
			t.Errorf("Hold after rmi: %v, want ErrImageUnknown", err)
		case !rmiFirst && err != nil:
			t.Fatalf("Hold: %v", err)
		case !rmiFirst:
			if kept := <-rmi; !kept || !hasLayer(s, top.ID) {
				t.Errorf("rmi during the lookup: kept %v, layer there %v; want both", kept, hasLayer(s, top.ID))
			}
		}
		if _, err := lease.Release(); err != nil {
			t.Fatal(err)
		}
		if hasLayer(s, top.ID) {
			t.Errorf("layer %s outlived its image and the build", top.ID)
		}
	}
}

// A ref (a build cache entry) keeps its layer and the layer's ancestors
// through a release, a prune and the rmi of the image they were part of;
// once the ref is gone, prune deletes them.
func TestRefsKeepLayersWithoutAnImage(t *testing.T) {
	s, _ := openTestStore(t)
	base, _ := imageOf(t, s, "base", "", baseTree, []string{"localhost/base:latest"}, nil)
	lease, err := s.NewLease()
	if err != nil {
		t.Fatal(err)
	}
	cached := commitIn(t, s, lease, "cached", base.ID, map[string]string{"c": "c"})
	top := commitIn(t, s, lease, "top", cached.ID, map[string]string{"t": "t"})
	dir, err := s.RefsDir("cache")
	if err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(dir, "entry")
	if err := os.WriteFile(ref, []byte(`{"layer":"`+cached.ID+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	img := putImage(t, s, top.ID, []string{"localhost/app:latest"}, map[string]any{MadeFlag: true})
	if _, err := lease.Release(); err != nil {
		t.Fatal(err)
	}
	// rmi: the image and its top layer go, the cached layer stays.
	if kept, err := s.DeleteImage(img); err != nil || kept {
		t.Fatalf("DeleteImage = kept %v, %v; want deleted", kept, err)
	}
	if _, err := s.store.Image(img); err == nil {
		t.Errorf("the image is still there")
	}
	if hasLayer(s, top.ID) || !hasLayer(s, cached.ID) {
		t.Errorf("after rmi: top there %v (want gone), cached there %v (want kept)", hasLayer(s, top.ID), hasLayer(s, cached.ID))
	}
	if c, err := s.Prune(PruneOptions{DanglingImages: true}); err != nil || len(c.Layers) != 0 {
		t.Errorf("prune with the ref: %+v, %v; want nothing deleted", c, err)
	}
	if err := os.Remove(ref); err != nil {
		t.Fatal(err)
	}
	c, err := s.Prune(PruneOptions{})
	if err != nil || len(c.Layers) != 1 || c.Layers[0].ID != cached.ID {
		t.Errorf("prune without the ref: %+v, %v; want the cached layer deleted", c, err)
	}
	if !hasLayer(s, base.ID) {
		t.Errorf("the base image's layer went")
	}
}

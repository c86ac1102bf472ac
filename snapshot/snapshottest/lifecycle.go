package snapshottest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/stepexec/stepexec/snapshot"
)

// gone checks that a snapshot's directory no longer exists.
func (x *tester) gone(dir, what string) {
	x.t.Helper()
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		x.t.Errorf("%s: %s is still there (%v)", what, dir, err)
	}
}

// testRemove: Remove drops a snapshot's changes and frees its key; keys
// are checked.
func testRemove(x *tester) {
	base := x.layer("", BaseTree...).Layer.ID
	snap, err := x.s.Prepare(x.ctx, "gone", base)
	if err != nil {
		x.t.Fatal(err)
	}
	if err := Apply(snap.Dir, Write("x", "x")); err != nil {
		x.t.Fatal(err)
	}
	if err := x.s.Remove(x.ctx, "gone"); err != nil {
		x.t.Fatalf("Remove: %v", err)
	}
	x.gone(snap.Dir, "after Remove")
	for _, key := range []string{"gone", "never-was"} {
		if err := x.s.Remove(x.ctx, key); err != nil {
			x.t.Errorf("Remove of unknown key %s: %v", key, err)
		}
	}
	again, err := x.s.Prepare(x.ctx, "gone", base)
	if err != nil {
		x.t.Fatalf("Prepare after Remove: %v", err)
	}
	x.checkTree(again.Dir, oracle(x.t, BaseTree), "a snapshot prepared again")
	if err := x.s.Remove(x.ctx, "gone"); err != nil {
		x.t.Fatal(err)
	}
	for _, bad := range []string{"", "a/b", "..", ".", strings.Repeat("k", 201)} {
		_, err := x.s.Prepare(x.ctx, bad, "")
		x.mustFail(err, fmt.Sprintf("Prepare with key %q", bad))
		_, err = x.s.View(x.ctx, bad, "")
		x.mustFail(err, fmt.Sprintf("View with key %q", bad))
	}
}

// testSameKey: a key names one active snapshot or view at a time.
func testSameKey(x *tester) {
	if _, err := x.s.Prepare(x.ctx, "k", ""); err != nil {
		x.t.Fatal(err)
	}
	_, err := x.s.Prepare(x.ctx, "k", "")
	x.mustFail(err, "Prepare with a key in use")
	_, err = x.s.View(x.ctx, "k", "")
	x.mustFail(err, "View with a snapshot's key")
	if _, err := x.s.Commit(x.ctx, "k"); err != nil {
		x.t.Fatal(err)
	}
	if _, err := x.s.View(x.ctx, "k", ""); err != nil {
		x.t.Fatalf("View with a committed snapshot's key: %v", err)
	}
	_, err = x.s.Prepare(x.ctx, "k", "")
	x.mustFail(err, "Prepare with a view's key")
	if err := x.s.Remove(x.ctx, "k"); err != nil {
		x.t.Fatal(err)
	}
}

// testCommitFailure: a Commit that fails stores nothing and frees the key.
func testCommitFailure(x *tester) {
	base := x.layer("", BaseTree...).Layer.ID
	change := Write("f", "f")
	snap, err := x.s.Prepare(x.ctx, "fail", base)
	if err != nil {
		x.t.Fatal(err)
	}
	if err := Apply(snap.Dir, change); err != nil {
		x.t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(x.ctx)
	cancel()
	c, err := x.s.Commit(canceled, "fail")
	x.mustFail(err, fmt.Sprintf("Commit with a canceled context (%+v)", c))
	x.gone(snap.Dir, "after a failed Commit")
	_, err = x.s.Commit(x.ctx, "fail")
	x.mustFail(err, "a second Commit of the same key")
	_, err = x.s.Commit(x.ctx, "never-was")
	x.mustFail(err, "Commit of an unknown key")
	if c := x.layer(base, change); c.Reused {
		x.t.Errorf("the failed Commit stored layer %s", c.Layer.ID)
	}
}

// testUnknownParent: Prepare and View on a layer that does not exist fail
// and leave the key free.
func testUnknownParent(x *tester) {
	bad := "0000000000000000000000000000000000000000000000000000000000000000"
	_, err := x.s.Prepare(x.ctx, "k", bad)
	x.mustFail(err, "Prepare on an unknown layer")
	_, err = x.s.View(x.ctx, "k", bad)
	x.mustFail(err, "View of an unknown layer")
	if rc, err := x.s.Diff(x.ctx, bad); err == nil {
		rc.Close()
		x.t.Error("Diff of an unknown layer succeeded")
	}
	if c := x.layer("", Write("f", "f")); c.Empty {
		x.t.Error("Commit: Empty")
	}
}

// testRemoveIntermediate: removing one snapshot on a layer of a chain
// leaves the other snapshots and views on the chain alone.
func testRemoveIntermediate(x *tester) {
	l1 := []Change{Write("a", "1"), Write("d/x", "x")}
	l2 := []Change{Write("b", "2"), Remove("d/x")}
	id1 := x.layer("", l1...).Layer.ID
	id2 := x.layer(id1, l2...).Layer.ID
	a, err := x.s.Prepare(x.ctx, "a", id1)
	if err != nil {
		x.t.Fatal(err)
	}
	if err := Apply(a.Dir, Write("only-a", "a")); err != nil {
		x.t.Fatal(err)
	}
	v, err := x.s.View(x.ctx, "v", id1)
	if err != nil {
		x.t.Fatal(err)
	}
	if _, err := x.s.Prepare(x.ctx, "b", id2); err != nil {
		x.t.Fatal(err)
	}
	if err := x.s.Remove(x.ctx, "a"); err != nil {
		x.t.Fatal(err)
	}
	x.checkTree(v.Dir, oracle(x.t, l1), "a view on the first layer")
	if c, err := x.s.Commit(x.ctx, "b"); err != nil || !c.Empty {
		x.t.Errorf("Commit of the untouched snapshot on the second layer: %+v, %v", c, err)
	}
	x.checkView(id2, oracle(x.t, l1, l2))
	if err := x.s.Remove(x.ctx, "v"); err != nil {
		x.t.Fatal(err)
	}
}

// testDeletedInChild: files deleted in a child layer are gone from its
// tree only, and can come back in a grandchild.
func testDeletedInChild(x *tester) {
	l1 := []Change{Write("f", "f"), Write("d/g", "g"), Write("d/h", "h"), Chtimes("d")}
	l2 := []Change{Remove("f"), RemoveAll("d")}
	l3 := []Change{Write("d/new", "new"), Write("f", "back")}
	id1 := x.layer("", l1...).Layer.ID
	c2 := x.layer(id1, l2...)
	if names, _ := x.checkLayer(c2, id1); !slices.Equal(names, []string{".wh.d", ".wh.f"}) {
		x.t.Errorf("layer deleting f and d: %q", names)
	}
	c3 := x.layer(c2.Layer.ID, l3...)
	if names, _ := x.checkLayer(c3, c2.Layer.ID); !slices.Equal(names, []string{"d/", "d/new", "f"}) {
		x.t.Errorf("layer making d again: %q (a directory where the parent has none is not opaque)", names)
	}
	x.checkView(id1, oracle(x.t, l1))
	x.checkView(c2.Layer.ID, oracle(x.t, l1, l2))
	x.checkView(c3.Layer.ID, oracle(x.t, l1, l2, l3))
}

// testOpaqueDirs: a directory deleted and made again hides all its
// parent had below it, in its own layer and in the layers above.
func testOpaqueDirs(x *tester) {
	l1 := []Change{Write("d/a", "a"), Write("d/b", "b"), Write("d/sub/c", "c")}
	l2 := []Change{RemoveAll("d"), Mkdir("d", 0o755), Mkdir("d/sub", 0o755), Write("d/sub/z", "z")}
	l3 := []Change{Write("d/e", "e")}
	id1 := x.layer("", l1...).Layer.ID
	c2 := x.layer(id1, l2...)
	names, _ := x.checkLayer(c2, id1)
	if want := []string{"d/", "d/.wh..wh..opq", "d/sub/", "d/sub/z"}; !slices.Equal(names, want) {
		x.t.Errorf("layer replacing d: %q, want %q", names, want)
	}
	c3 := x.layer(c2.Layer.ID, l3...)
	if names, _ := x.checkLayer(c3, c2.Layer.ID); !slices.Equal(names, []string{"d/", "d/e"}) {
		x.t.Errorf("layer above: %q", names)
	}
	x.checkView(c2.Layer.ID, oracle(x.t, l1, l2))
	x.checkView(c3.Layer.ID, oracle(x.t, l1, l2, l3))
}

// testViewReadOnly: what is written into a view never reaches a layer,
// and a view cannot be committed.
func testViewReadOnly(x *tester) {
	l1 := []Change{Write("f", "orig")}
	id := x.layer("", l1...).Layer.ID
	v, err := x.s.View(x.ctx, "v", id)
	if err != nil {
		x.t.Fatal(err)
	}
	// The overlay backend refuses these (EROFS); the native one lets
	// them land in the view's own copy.
	_ = os.WriteFile(filepath.Join(v.Dir, "f"), []byte("changed"), 0o644)
	_ = os.WriteFile(filepath.Join(v.Dir, "x"), []byte("x"), 0o644)
	x.checkView(id, oracle(x.t, l1))
	if c := x.layer(id); !c.Empty {
		x.t.Errorf("a snapshot on the layer viewed has changes: %+v", c)
	}
	_, err = x.s.Commit(x.ctx, "v")
	x.mustFail(err, "Commit of a view")
	if err := x.s.Remove(x.ctx, "v"); err != nil {
		x.t.Errorf("Remove after the failed Commit: %v", err)
	}
	empty, err := x.s.View(x.ctx, "v", "")
	if err != nil {
		x.t.Fatalf("View of the empty tree: %v", err)
	}
	if lines, err := Describe(empty.Dir); err != nil || len(lines) > 0 {
		x.t.Errorf("View of the empty tree holds %q (%v)", lines, err)
	}
}

// testConcurrent: snapshots and views made and committed at once.
func testConcurrent(x *tester) {
	base := x.layer("", BaseTree...).Layer.ID
	const n = 4
	ids := make([]string, n)
	errs := make(chan error, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs <- x.commitOne(base, i, &ids[i]) })
		wg.Go(func() { errs <- x.viewOne(base, i) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			x.t.Error(err)
		}
	}
	for i, id := range ids {
		if id != "" {
			x.checkView(id, oracle(x.t, BaseTree, []Change{Write(fmt.Sprint("f", i), "f")}))
		}
	}
}

func (x *tester) commitOne(base string, i int, id *string) error {
	key := fmt.Sprint("c", i)
	snap, err := x.s.Prepare(x.ctx, key, base)
	if err != nil {
		return err
	}
	if err := Apply(snap.Dir, Write(fmt.Sprint("f", i), "f")); err != nil {
		return err
	}
	c, err := x.s.Commit(x.ctx, key)
	*id = c.Layer.ID
	return err
}

func (x *tester) viewOne(base string, i int) error {
	key := fmt.Sprint("v", i)
	if _, err := x.s.View(x.ctx, key, base); err != nil {
		return err
	}
	return x.s.Remove(x.ctx, key)
}

// testForStep: a snapshot for a RUN step shows its parent's tree (with
// the ids of the steps' user namespace where the backend idmaps it), and
// an untouched one commits to nothing.
func testForStep(x *tester) {
	base := x.layer("", BaseTree...).Layer.ID
	snap, err := x.s.Prepare(x.ctx, "step", base, snapshot.ForStep())
	if err != nil {
		x.t.Fatal(err)
	}
	if !snap.IDMapped {
		x.checkTree(snap.Dir, oracle(x.t, BaseTree), "a snapshot for a step")
	}
	if c, err := x.s.Commit(x.ctx, "step"); err != nil || !c.Empty {
		x.t.Errorf("Commit of an untouched step snapshot: %+v, %v", c, err)
	}
}

// testCloseTwice: Close removes what is active, and a second Close does
// nothing.
func testCloseTwice(x *tester) {
	snap, err := x.s.Prepare(x.ctx, "p", "")
	if err != nil {
		x.t.Fatal(err)
	}
	if err := Apply(snap.Dir, Write("f", "f")); err != nil {
		x.t.Fatal(err)
	}
	v, err := x.s.View(x.ctx, "v", "")
	if err != nil {
		x.t.Fatal(err)
	}
	for i := range 2 {
		if err := x.s.Close(); err != nil {
			x.t.Errorf("Close #%d: %v", i+1, err)
		}
	}
	x.gone(snap.Dir, "after Close")
	x.gone(v.Dir, "after Close")
	_, err = x.s.Prepare(x.ctx, "q", "")
	x.mustFail(err, "Prepare after Close")
	_, err = x.s.View(x.ctx, "w", "")
	x.mustFail(err, "View after Close")
}

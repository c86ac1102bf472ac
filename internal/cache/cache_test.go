package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

func TestChain(t *testing.T) {
	type def struct{ Args []string }
	base := Base("abc")
	k1, err := Chain(base, "run", def{[]string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	same, _ := Chain(base, "run", def{[]string{"a"}})
	for name, other := range map[string]func() (Key, error){
		"parent": func() (Key, error) { return Chain(Base("abd"), "run", def{[]string{"a"}}) },
		"kind":   func() (Key, error) { return Chain(base, "copy", def{[]string{"a"}}) },
		"def":    func() (Key, error) { return Chain(base, "run", def{[]string{"b"}}) },
		"input":  func() (Key, error) { return Chain(base, "run", def{[]string{"a"}}, digest.FromString("x")) },
		// ["a b"] and ["a", "b"] are different commands.
		"split": func() (Key, error) { return Chain(base, "run", def{[]string{"a", "b"}}) },
	} {
		k, err := other()
		if err != nil || k == k1 {
			t.Errorf("changing the %s keeps the key (%v)", name, err)
		}
	}
	if same != k1 {
		t.Errorf("equal steps have keys %s and %s", k1, same)
	}
	if Base("") == Base("scratch") {
		t.Errorf("scratch and an image named scratch share a key")
	}
}

func TestIndex(t *testing.T) {
	dir := t.TempDir()
	x := Open(dir, t.TempDir())
	k, _ := Chain(Base(""), "run", "x")
	if _, ok, err := x.Get(k); ok || err != nil {
		t.Fatalf("empty index: ok=%v err=%v", ok, err)
	}
	want := Record{Layer: "l1", DiffID: digest.FromString("l1"), Size: 7, Created: time.Unix(5, 0).UTC()}
	if err := x.Put(k, want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := x.Get(k)
	if !ok || err != nil || got.Layer != want.Layer || got.DiffID != want.DiffID || got.Size != 7 || !got.Created.Equal(want.Created) {
		t.Fatalf("Get = %+v %v %v", got, ok, err)
	}
	// A later Put of the key wins.
	want.Layer = "l2"
	if err := x.Put(k, want); err != nil {
		t.Fatal(err)
	}
	var walked []Record
	if err := x.Walk(func(wk Key, r Record) error {
		if wk != k {
			t.Errorf("walked key %s, want %s", wk, k)
		}
		walked = append(walked, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(walked) != 1 || walked[0].Layer != "l2" || walked[0].Used.IsZero() {
		t.Fatalf("Walk = %+v", walked)
	}
	if err := x.Delete(k); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := x.Get(k); ok {
		t.Fatal("a deleted key is found")
	}
	if err := x.Delete(k); err != nil {
		t.Errorf("deleting an unknown key: %v", err)
	}
}

func TestIndexRejectsMalformedKeys(t *testing.T) {
	x := Open(t.TempDir(), t.TempDir())
	for _, k := range []Key{"", "scratch", "sha256:../../etc", "sha256:ABCDEF"} {
		if err := x.Put(k, Record{Layer: "l"}); err == nil {
			t.Errorf("Put(%q) succeeded", k)
		}
	}
}

func TestIndexDamagedRecordIsAMiss(t *testing.T) {
	dir := t.TempDir()
	x := Open(dir, t.TempDir())
	k, _ := Chain(Base(""), "run", "x")
	p, _ := x.path(k)
	if err := os.WriteFile(p, []byte(`{"layer":`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := x.Get(k); ok || err != nil {
		t.Errorf("a damaged record: ok=%v err=%v", ok, err)
	}
}

func TestWalkRemovesStaleTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	stale, fresh := filepath.Join(dir, tempPrefix+"1"), filepath.Join(dir, tempPrefix+"2")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte(`{"layer":"l"}`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(stale, old, old)
	n := 0
	if err := Open(dir, t.TempDir()).Walk(func(Key, Record) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("Walk gave %d records for temporary files", n)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("a killed Put's file stays")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a running Put's file was removed: %v", err)
	}
}

func TestLockWaitsAndLeavesNoFile(t *testing.T) {
	locks := t.TempDir()
	x := Open(t.TempDir(), locks)
	k, _ := Chain(Base(""), "run", "x")
	unlock, err := x.Lock(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		u, err := x.Lock(t.Context(), k)
		if err == nil {
			u()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("a second Lock did not wait: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	// A waiter gives up when its context ends.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := x.Lock(ctx, k); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lock with an ended context: %v", err)
	}
	unlock()
	if err := <-got; err != nil {
		t.Fatalf("the waiter: %v", err)
	}
	if left, _ := os.ReadDir(locks); len(left) != 0 {
		t.Errorf("lock files left: %v", left)
	}
}

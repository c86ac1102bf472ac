// Package snapshottest is the conformance suite of snapshot.Snapshotter,
// after containerd's snapshots/testsuite: every backend (the overlay
// Store, snapshot/native) must pass it, so that a build gives the same
// layers on each and the engine's tests on the native one say something
// about the overlay one.
//
// Its oracle is a plain directory: each test applies the same Changes to
// a snapshot and to a directory, commits the snapshot and checks that a
// View of the layer shows exactly the directory's tree (Describe), and
// that the layer's tar holds exactly the expected entries, its DiffID,
// size, file and byte counts, and its ID (snapshot.LayerID).
package snapshottest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/stepexec/stepexec/snapshot"
)

// Run runs the suite. open returns a fresh, empty backend for each test;
// the suite closes it (more than once: Close must be idempotent), and
// open may register more cleanup (leftover checks) with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) snapshot.Snapshotter) {
	tests := []struct {
		name string
		fn   func(x *tester)
	}{
		{"CommitCases", testCommitCases},
		{"Chain", testChain},
		{"EmptyAndDedup", testEmptyAndDedup},
		{"Remove", testRemove},
		{"SameKey", testSameKey},
		{"CommitFailureLeavesNothing", testCommitFailure},
		{"UnknownParent", testUnknownParent},
		{"RemoveIntermediate", testRemoveIntermediate},
		{"DeletedInChild", testDeletedInChild},
		{"OpaqueDirs", testOpaqueDirs},
		{"ViewReadOnly", testViewReadOnly},
		{"Concurrent", testConcurrent},
		{"ForStep", testForStep},
		{"CloseTwice", testCloseTwice},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(&tester{t: t, s: s, ctx: context.Background(), n: new(atomic.Int64)})
		})
	}
}

// tester is one test's backend.
type tester struct {
	t   *testing.T
	s   snapshot.Snapshotter
	ctx context.Context
	n   *atomic.Int64 // keys made, shared with subtests
}

// key returns a fresh snapshot key.
func (x *tester) key(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, x.n.Add(1))
}

// layer prepares a snapshot on parent, applies changes, commits it and
// checks the layer (checkLayer); it returns the commit.
func (x *tester) layer(parent string, changes ...Change) snapshot.Committed {
	x.t.Helper()
	key := x.key("layer")
	snap, err := x.s.Prepare(x.ctx, key, parent)
	if err != nil {
		x.t.Fatalf("Prepare on %q: %v", parent, err)
	}
	if snap.Parent != parent || snap.Key != key {
		x.t.Errorf("Prepare on %q gave %+v", parent, snap)
	}
	if err := Apply(snap.Dir, changes...); err != nil {
		_ = x.s.Remove(x.ctx, key)
		x.t.Fatalf("changing %s: %v", snap.Dir, err)
	}
	c, err := x.s.Commit(x.ctx, key)
	if err != nil {
		x.t.Fatalf("Commit: %v", err)
	}
	if _, err := os.Lstat(snap.Dir); !os.IsNotExist(err) {
		x.t.Errorf("Commit left the snapshot's directory %s: %v", snap.Dir, err)
	}
	if !c.Empty {
		x.checkLayer(c, parent)
	}
	return c
}

// entry is one tar entry of a layer.
type entry struct {
	hdr     *tar.Header
	content []byte
}

// checkLayer reads the layer's tar back and checks what Commit said of
// it; it returns the entries' names in order and the entries.
func (x *tester) checkLayer(c snapshot.Committed, parent string) ([]string, map[string]entry) {
	x.t.Helper()
	l := c.Layer
	if l.Parent != parent || l.ID != snapshot.LayerID(parent, l.DiffID) {
		x.t.Errorf("layer %+v on %q: want that parent and ID LayerID(parent, DiffID) = %s", l, parent, snapshot.LayerID(parent, l.DiffID))
	}
	rc, err := x.s.Diff(x.ctx, l.ID)
	if err != nil {
		x.t.Fatalf("Diff %s: %v", l.ID, err)
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		x.t.Fatalf("reading the diff of %s: %v", l.ID, err)
	}
	if got := digest.FromBytes(raw); got != l.DiffID || int64(len(raw)) != l.Size {
		x.t.Errorf("layer %s: Diff is %d bytes with digest %s; the layer says %d bytes, DiffID %s", l.ID, len(raw), got, l.Size, l.DiffID)
	}
	names, entries, err := readTar(raw)
	if err != nil {
		x.t.Fatalf("layer %s: %v", l.ID, err)
	}
	var nbytes int64
	for _, e := range entries {
		nbytes += int64(len(e.content))
	}
	if c.Files != len(names) || c.Bytes != nbytes {
		x.t.Errorf("Committed says %d files, %d bytes; the tar has %d entries, %d bytes", c.Files, c.Bytes, len(names), nbytes)
	}
	return names, entries
}

func readTar(raw []byte) ([]string, map[string]entry, error) {
	var names []string
	entries := map[string]entry{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, entries, nil
		}
		if err != nil {
			return nil, nil, err
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, nil, err
		}
		names = append(names, h.Name)
		entries[h.Name] = entry{hdr: h, content: b}
	}
}

// checkView checks that a view of layer shows the tree of the oracle
// directory want.
func (x *tester) checkView(layer, want string) {
	x.t.Helper()
	key := x.key("view")
	v, err := x.s.View(x.ctx, key, layer)
	if err != nil {
		x.t.Fatalf("View of %q: %v", layer, err)
	}
	defer func() {
		if err := x.s.Remove(x.ctx, key); err != nil {
			x.t.Errorf("Remove of view: %v", err)
		}
	}()
	x.checkTree(v.Dir, want, "view of "+layer)
}

// checkTree compares the trees of got and want.
func (x *tester) checkTree(got, want, what string) {
	x.t.Helper()
	g, err := Describe(got)
	if err != nil {
		x.t.Fatalf("%s: %v", what, err)
	}
	w, err := Describe(want)
	if err != nil {
		x.t.Fatalf("oracle: %v", err)
	}
	if !slices.Equal(g, w) {
		x.t.Errorf("%s differs from the oracle:\n%s", what, lineDiff(g, w))
	}
}

// lineDiff lists the lines only got has (+) and only want has (-).
func lineDiff(got, want []string) string {
	var b strings.Builder
	for _, l := range got {
		if !slices.Contains(want, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	for _, l := range want {
		if !slices.Contains(got, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	return b.String()
}

// mustFail fails the test unless err is an error.
func (x *tester) mustFail(err error, what string) {
	x.t.Helper()
	if err == nil {
		x.t.Errorf("%s succeeded", what)
	}
}

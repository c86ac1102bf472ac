package snapshot

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage/pkg/reexec"

	"github.com/stepexec/stepexec/runtime/userns"
)

// helperEnv makes the test binary act as a store user that gets killed (see
// TestOpenRemovesStaleSnapshots).
const helperEnv = "STEPEXEC_SNAPSHOT_TEST_HELPER"

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	// As the stepexec binary does: as a non-root user, become root of an
	// outer user namespace with the user's subordinate ids; as real root,
	// get a private mount namespace (snapshots for steps are mounted only
	// in one).
	if err := userns.Enter(userns.SubIDs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if root := os.Getenv(helperEnv); root != "" {
		os.Exit(runKilledHelper(root))
	}
	os.Exit(m.Run())
}

// runKilledHelper opens the store at root, commits a layer on the layer
// $STEPEXEC_SNAPSHOT_TEST_PARENT in a lease if that is set, prepares a
// snapshot, says "ready MERGED [LAYER]" and waits to be killed.
func runKilledHelper(root string) int {
	s, err := Open(Options{Root: filepath.Join(root, "graph"), RunRoot: filepath.Join(root, "run")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	made := ""
	if parent, ok := os.LookupEnv(helperParentEnv); ok {
		if made, err = commitInLease(s, parent); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	snap, err := s.Prepare(context.Background(), "doomed", "")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.WriteFile(filepath.Join(snap.Dir, "f"), []byte("x"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready", snap.Dir, made)
	select {}
}

// helperParentEnv makes the killed helper commit a layer on this parent.
const helperParentEnv = "STEPEXEC_SNAPSHOT_TEST_PARENT"

func commitInLease(s *Store, parent string) (string, error) {
	ctx := context.Background()
	lease, err := s.NewLease()
	if err != nil {
		return "", err
	}
	snap, err := s.Prepare(ctx, "made", parent)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(snap.Dir, "made"), []byte(snap.Dir), 0o644); err != nil {
		return "", err
	}
	c, err := s.Commit(ctx, "made", WithLease(lease))
	return c.Layer.ID, err
}

// openTestStore opens a store in a fresh temp dir, closed at cleanup.
func openTestStore(t testing.TB) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(Options{Root: filepath.Join(dir, "graph"), RunRoot: filepath.Join(dir, "run")})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		var roots string
		if s.view != nil {
			roots = s.view.roots.dir
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertNoMountsUnder(t, dir)
		if roots != "" {
			assertNoMountsUnder(t, roots)
			if _, err := os.Lstat(roots); !os.IsNotExist(err) {
				t.Errorf("the steps' roots mount point %s is still there after Close: %v", roots, err)
			}
		}
	})
	return s, dir
}

// mountsUnder lists mount points at or below dir.
func mountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

func assertNoMountsUnder(t testing.TB, dir string) {
	t.Helper()
	if m := mountsUnder(t, dir); len(m) > 0 {
		t.Errorf("mounts left under %s: %v", dir, m)
	}
}

// layerEntry is one tar entry of a layer with its content.
type layerEntry struct {
	hdr     *tar.Header
	content []byte
}

// readLayer reads a layer back through Diff, checking that the stream's
// digest and size are the layer's DiffID and Size.
func readLayer(t testing.TB, s *Store, id string) (names []string, entries map[string]layerEntry) {
	t.Helper()
	l, err := s.Layer(id)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := s.Diff(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("reading diff of %s: %v", id, err)
	}
	if got := digest.FromBytes(raw); got != l.DiffID {
		t.Errorf("layer %s: Diff stream digest %s, DiffID %s", id, got, l.DiffID)
	}
	if int64(len(raw)) != l.Size {
		t.Errorf("layer %s: Diff stream is %d bytes, Size %d", id, len(raw), l.Size)
	}
	entries = map[string]layerEntry{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("layer %s: %v", id, err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		entries[h.Name] = layerEntry{hdr: h, content: b}
	}
	return names, entries
}

func sha256hex(s string) string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(s)))
}

package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/tar/asm"
	tsstorage "github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"
)

// tarSplitOf is the reference: tar-split's disassembler run over the tar
// WriteLayerTar makes of upper, as recordLayer did before it recorded the
// entries itself.
func tarSplitOf(t *testing.T, upper string) (meta []byte, d digest.Digest, size int64) {
	t.Helper()
	var layer, out bytes.Buffer
	if _, _, err := WriteLayerTar(&layer, upper); err != nil {
		t.Fatalf("WriteLayerTar: %v", err)
	}
	payload, done, err := asm.NewInputTarStreamWithDone(&layer, tsstorage.NewJSONPacker(&out), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	size, err = io.Copy(h, payload)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)), size
}

// assertRecordMatchesTarSplit holds recordLayer's tar-split file, digest
// and size to the reference's, byte for byte.
func assertRecordMatchesTarSplit(t *testing.T, upper string) {
	t.Helper()
	wantMeta, wantDigest, wantSize := tarSplitOf(t, upper)
	ts := filepath.Join(t.TempDir(), "tar-split")
	rec, err := recordLayer(context.Background(), upper, ts)
	if err != nil {
		t.Fatalf("recordLayer: %v", err)
	}
	rec.tarSplit.Close()
	got, err := os.ReadFile(ts)
	if err != nil {
		t.Fatal(err)
	}
	if rec.diffID != wantDigest || rec.size != wantSize {
		t.Errorf("recordLayer: %s, %d bytes; the tar is %s, %d bytes", rec.diffID, rec.size, wantDigest, wantSize)
	}
	if !bytes.Equal(got, wantMeta) {
		t.Errorf("tar-split differs from asm's:\n--- recordLayer\n%s--- asm\n%s", got, wantMeta)
	}
}

func TestRecordLayerMatchesTarSplit(t *testing.T) {
	write := func(t *testing.T, dir, name string, data []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		rand.New(rand.NewSource(int64(n))).Read(b)
		return b
	}
	for _, tc := range []struct {
		name string
		make func(t *testing.T, dir string)
	}{
		{"empty", func(*testing.T, string) {}},
		{"every kind of entry", buildFakeUpper},
		{"sizes around blocks and hash chunks", func(t *testing.T, dir string) {
			for _, n := range []int{0, 1, 511, 512, 513, 1024, hashChunk - 1, hashChunk, hashChunk + 1, 3*hashChunk + 7, 5 << 20} {
				write(t, dir, "f"+strconv.Itoa(n), random(n))
			}
		}},
		{"many small files", func(t *testing.T, dir string) {
			for i := range 600 {
				write(t, dir, "d"+strconv.Itoa(i%7)+"/f"+strconv.Itoa(i), random(100+i))
			}
		}},
		{"names tar-split stores raw", func(t *testing.T, dir string) {
			write(t, dir, "caf\xe9", []byte("latin-1 name\n"))
			write(t, dir, strings.Repeat("n", 99)+"/"+strings.Repeat("\xff", 150), []byte("long, not UTF-8\n"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			upper := t.TempDir()
			tc.make(t, upper)
			assertRecordMatchesTarSplit(t, upper)
		})
	}
}

// failingPacker fails its third entry, as a full disk under the tar-split
// file would.
type failingPacker struct{ n int }

var errPackerFull = errors.New("no space left (test)")

func (p *failingPacker) AddEntry(tsstorage.Entry) (int, error) {
	if p.n++; p.n == 3 {
		return -1, errPackerFull
	}
	return p.n, nil
}

func TestSplitRecorderFailureStopsTheWriter(t *testing.T) {
	upper := t.TempDir()
	for i := range 10 {
		if err := os.WriteFile(filepath.Join(upper, "f"+strconv.Itoa(i)), bytes.Repeat([]byte{byte(i)}, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	split := newSplitRecorder(&failingPacker{})
	lw := newLayerWriter(context.Background(), split, upper)
	lw.onHeader = func(h *tar.Header) { split.entry(h.Name, h.Size) }
	runErr := lw.run()
	_, _, err := split.finish()
	if !errors.Is(err, errPackerFull) || !errors.Is(runErr, errPackerFull) {
		t.Fatalf("finish: %v; writer: %v; want both to carry %v", err, runErr, errPackerFull)
	}
	if lw.files > 3 {
		t.Errorf("the writer went on for %d entries after the recorder failed", lw.files)
	}
}

func TestParallelHashMatchesSHA256(t *testing.T) {
	data := make([]byte, 9*hashChunk+123)
	rand.New(rand.NewSource(1)).Read(data)
	// Writes of step bytes, or (step 0) of 512 and 100,000 bytes by turns,
	// as a tar writer's headers and file contents come.
	for _, step := range []int{0, 1, 100, 4096, hashChunk - 1, hashChunk, hashChunk + 1, 2*hashChunk + 5, len(data)} {
		for _, n := range []int{0, 10, hashChunk, hashChunk + 1, len(data)} {
			h := newParallelHash(sha256.New())
			for off, i := 0, 0; off < n; i++ {
				size := step
				if step == 0 {
					size = []int{512, 100_000}[i%2]
				}
				h.Write(data[off:min(off+size, n)])
				off += size
			}
			want := sha256.Sum256(data[:n])
			if got := h.Sum(); !bytes.Equal(got, want[:]) {
				t.Errorf("%d bytes in writes of %d: sum %x, want %x", n, step, got, want)
			}
		}
	}
}

// TestCommitRestoresAMissingTarSplit: a layer left without its tar-split
// (a build killed between the store making it and commitStaged writing
// the tar-split) gets it back from the next commit of the same layer,
// which reuses it.
func TestCommitRestoresAMissingTarSplit(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	commitSame := func(key string) Committed {
		t.Helper()
		snap, err := s.Prepare(ctx, key, "")
		if err != nil {
			t.Fatal(err)
		}
		writeTree(t, snap.Dir, map[string]string{"a/f": "the same content"})
		ts := []unix.Timespec{unix.NsecToTimespec(fixedTime.UnixNano()), unix.NsecToTimespec(fixedTime.UnixNano())}
		for _, p := range []string{"a/f", "a"} {
			if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(snap.Dir, p), ts, 0); err != nil {
				t.Fatal(err)
			}
		}
		c, err := s.Commit(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := commitSame("first")
	ts := s.tarSplitPath(first.Layer.ID)
	if err := os.Remove(ts); err != nil {
		t.Fatalf("the committed layer has no tar-split where the store keeps it: %v", err)
	}
	second := commitSame("second")
	if !second.Reused || second.Layer.ID != first.Layer.ID {
		t.Fatalf("the second commit made %+v, want layer %s reused", second, first.Layer.ID)
	}
	if _, err := os.Stat(ts); err != nil {
		t.Fatalf("the reused layer's tar-split was not restored: %v", err)
	}
	readLayer(t, s, first.Layer.ID) // its Diff must hash to its DiffID
}

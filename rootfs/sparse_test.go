package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fragment is a run of data in a sparse file; the rest is holes.
type fragment struct {
	off  int64
	data []byte
}

// rawHeader builds a 512-byte tar header block by hand: archive/tar writes
// neither GNU's old sparse headers nor PAX sparse records, which real tars
// (GNU tar --sparse) do.
func rawHeader(name string, typ byte, size int64, gnu bool, fill func(b []byte)) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], fmt.Sprintf("%011o\x00", testTime.Unix()))
	b[156] = typ
	if gnu {
		copy(b[257:265], "ustar  \x00")
	} else {
		copy(b[257:265], "ustar\x0000")
	}
	if fill != nil {
		fill(b)
	}
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func pad512(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

// paxRecord formats "LEN KEY=VALUE\n", LEN counting itself.
func paxRecord(k, v string) string {
	size := len(k) + len(v) + 3
	size += len(strconv.Itoa(size))
	rec := strconv.Itoa(size) + " " + k + "=" + v + "\n"
	if len(rec) != size {
		rec = strconv.Itoa(len(rec)) + " " + k + "=" + v + "\n"
	}
	return rec
}

// paxSparse is one PAX sparse 1.0 entry (what GNU tar --sparse --format=pax
// writes): a PAX header naming the real name and size, then a regular
// entry whose content is the sparse map followed by the data fragments.
func paxSparse(name string, realSize int64, frags []fragment) []byte {
	records := paxRecord("GNU.sparse.major", "1") + paxRecord("GNU.sparse.minor", "0") +
		paxRecord("GNU.sparse.name", name) + paxRecord("GNU.sparse.realsize", fmt.Sprint(realSize))
	out := rawHeader("PaxHeaders/"+name, tar.TypeXHeader, int64(len(records)), false, nil)
	out = append(out, pad512([]byte(records))...)
	m := fmt.Sprintf("%d\n", len(frags))
	for _, f := range frags {
		m += fmt.Sprintf("%d\n%d\n", f.off, len(f.data))
	}
	body := pad512([]byte(m))
	for _, f := range frags {
		body = append(body, f.data...)
	}
	out = append(out, rawHeader("GNUSparseFile.0/"+name, tar.TypeReg, int64(len(body)), false, nil)...)
	return append(out, pad512(body)...)
}

// gnuSparse is one entry of GNU's old sparse format (type 'S'), with up to
// four fragments, the most its header holds without extension blocks.
func gnuSparse(name string, realSize int64, frags []fragment) []byte {
	var data []byte
	for _, f := range frags {
		data = append(data, f.data...)
	}
	hdr := rawHeader(name, tar.TypeGNUSparse, int64(len(data)), true, func(b []byte) {
		for i, f := range frags {
			at := 386 + 24*i
			copy(b[at:at+12], fmt.Sprintf("%011o\x00", f.off))
			copy(b[at+12:at+24], fmt.Sprintf("%011o\x00", len(f.data)))
		}
		copy(b[483:495], fmt.Sprintf("%011o\x00", realSize))
	})
	return append(hdr, pad512(data)...)
}

func endOfArchive(entries ...[]byte) []byte {
	return append(bytes.Join(entries, nil), make([]byte, 1024)...)
}

// contentHash is the sha256 of what archive/tar reads for the archive's
// only regular entry: the sparse file's content, holes as zeros.
func contentHash(t *testing.T, archive []byte) [32]byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(archive))
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, tr); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func fileHash(t *testing.T, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func TestUnpackSparseKeepsHoles(t *testing.T) {
	const mib = 1 << 20
	data := func(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }
	zerosThenX := append(make([]byte, 8*mib), 'x')
	// GNU tar 1.34 --sparse of a 32 MiB file holding "hello" at 0,
	// "middle" at 10 MiB+3 and "end" at its end.
	realTar := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name    string
		archive []byte
		size    int64
	}{
		{"pax 1.0", endOfArchive(paxSparse("s", 64*mib, []fragment{{0, data('a', 4096)}, {64*mib - 4096, data('z', 4096)}})), 64 * mib},
		{"pax 1.0 ending in a hole", endOfArchive(paxSparse("s", 64*mib, []fragment{{10 * mib, data('m', 100)}})), 64 * mib},
		{"gnu old", endOfArchive(gnuSparse("s", 48*mib, []fragment{{0, data('a', 512)}, {5*mib + 17, data('b', 9000)}, {48*mib - 1, []byte{'c'}}})), 48 * mib},
		{"gnu tar --format=gnu", realTar("sparse-gnu.tar"), 32 * mib},
		{"gnu tar --format=pax", realTar("sparse-pax.tar"), 32 * mib},
		{"zeros in a plain file", mktar(t, ent{typ: tar.TypeReg, name: "s", body: string(zerosThenX), mode: 0o644}), 8*mib + 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			st, err := Unpack(context.Background(), bytes.NewReader(c.archive), dir)
			if err != nil {
				t.Fatalf("Unpack: %v", err)
			}
			p := filepath.Join(dir, "s")
			if strings.HasPrefix(c.name, "gnu tar") {
				p = filepath.Join(dir, "f")
			}
			s := lstat(t, p)
			if s.Size != c.size || st.Bytes != c.size {
				t.Errorf("size %d (stats %d), want %d", s.Size, st.Bytes, c.size)
			}
			if s.Mode&unix.S_IFMT != unix.S_IFREG || s.Mode&0o7777 != 0o644 {
				t.Errorf("mode %o", s.Mode)
			}
			if used := s.Blocks * 512; used > mib {
				t.Errorf("%d bytes allocated for %d bytes of data: the holes were written", used, c.size)
			}
			if fileHash(t, p) != contentHash(t, c.archive) {
				t.Errorf("content differs from the archive's")
			}
		})
	}
}

// withTmpfs mounts a small tmpfs for the test (as root, or in the user and
// mount namespace TestMain entered).
func withTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

func TestUnpackRefusesEntryLargerThanFreeSpace(t *testing.T) {
	const tib = 1 << 40
	big := paxSparse("big", tib, []fragment{{0, []byte("head")}, {tib - 4, []byte("tail")}})
	cases := []struct {
		name    string
		archive []byte
		entry   string
	}{
		{"pax sparse of 1 TiB", endOfArchive(paxSparse("small", 10, []fragment{{0, []byte("0123456789")}}), big), "big"},
		{"gnu sparse of 1 TiB", endOfArchive(gnuSparse("big", tib, []fragment{{tib - 1, []byte{1}}})), "big"},
		{"plain file over the free space", mktar(t, fileE("small", "s"), fileE("big", strings.Repeat("x", 20<<20))), "big"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := withTmpfs(t, "16m")
			_, err := Unpack(context.Background(), bytes.NewReader(c.archive), dir)
			want := fmt.Sprintf("entry %q: ", c.entry)
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "free on the target filesystem") {
				t.Fatalf("Unpack error = %v, want %s… more than the … free", err, want)
			}
			if _, err := os.Lstat(filepath.Join(dir, c.entry)); !os.IsNotExist(err) {
				t.Errorf("the refused entry was created: %v", err)
			}
			var sfs unix.Statfs_t
			if err := unix.Statfs(dir, &sfs); err != nil {
				t.Fatal(err)
			}
			if used := (sfs.Blocks - sfs.Bfree) * uint64(sfs.Bsize); used > 1<<20 {
				t.Errorf("%d bytes were written before the refusal", used)
			}
		})
	}
}

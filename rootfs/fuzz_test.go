package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzInput hands out the fuzz input a byte at a time (zeros once it runs
// out), so every input decodes to some archive.
type fuzzInput struct{ b []byte }

func (f *fuzzInput) byte() byte {
	if len(f.b) == 0 {
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return c
}

func (f *fuzzInput) bytes(n int) []byte {
	n = min(n, len(f.b))
	p := f.b[:n]
	f.b = f.b[n:]
	return p
}

// escapeName is a name no correct unpack ever creates on the host: an
// archive path /tmp/escapeName must land inside the root.
const escapeName = "stepexec-fuzz-escape"

// fuzzComponents are what entry names and link targets are made of: the
// tricks hostile archives use. "@out" stands for the sentinel directory
// beside the root, as an absolute host path.
var fuzzComponents = []string{"a", "b", "c", "..", ".", "", "etc", "passwd", "evil", "outside", "tmp", escapeName,
	"@out", ".wh.x", ".wh..wh..opq", strings.Repeat("L", 120), "dev", "x y", "\u00e9"}

func (f *fuzzInput) path(out string) string {
	n := int(f.byte()%4) + 1
	parts := make([]string, 0, n)
	for range n {
		c := fuzzComponents[int(f.byte())%len(fuzzComponents)]
		if c == "@out" {
			c = strings.TrimPrefix(out, "/")
		}
		parts = append(parts, c)
	}
	p := strings.Join(parts, "/")
	switch f.byte() % 4 {
	case 0:
		p = "/" + p
	case 1:
		p += "/"
	}
	return p
}

var fuzzTypes = []byte{tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock,
	tar.TypeFifo, tar.TypeXGlobalHeader, tar.TypeCont, tar.TypeRegA, 'S', 'P'} // 'S', 'P': GNU, PAX sparse

// fuzzArchive decodes fuzz input into an archive. The first byte chooses:
// even, the rest is the archive as is (raw tar or gzip, so real archives
// seed the corpus); odd, entries are built from the rest (names, types,
// modes, owners, xattrs, sparse maps), so mutations reach the unpacker
// instead of failing tar's checksums, and the archive is then maybe
// gzipped or truncated.
func fuzzArchive(data []byte, out string) []byte {
	if len(data) == 0 || data[0]%2 == 0 {
		if len(data) == 0 {
			return nil
		}
		return data[1:]
	}
	in := &fuzzInput{b: data[1:]}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n := int(in.byte() % 16); n > 0; n-- {
		typ := fuzzTypes[int(in.byte())%len(fuzzTypes)]
		name := in.path(out)
		if typ == 'S' || typ == 'P' {
			tw.Flush()
			buf.Write(fuzzSparse(in, typ, name))
			continue
		}
		h := &tar.Header{Typeflag: typ, Name: name, Format: tar.FormatPAX, ModTime: testTime,
			Mode: int64(in.byte())<<4 | int64(in.byte()), Uid: int(in.byte()), Gid: int(in.byte())}
		switch typ {
		case tar.TypeSymlink, tar.TypeLink:
			h.Linkname = in.path(out)
		case tar.TypeChar, tar.TypeBlock:
			h.Devmajor, h.Devminor = int64(in.byte()), int64(in.byte())
		}
		var body []byte
		if typ == tar.TypeReg || typ == tar.TypeRegA {
			body = in.bytes(int(in.byte()))
			h.Size = int64(len(body))
		}
		if x := in.byte(); x%5 == 0 {
			h.PAXRecords = map[string]string{"SCHILY.xattr.user.fuzz": string(in.bytes(int(x % 32)))}
		}
		if tw.WriteHeader(h) != nil {
			continue // a header archive/tar cannot write
		}
		tw.Write(body)
	}
	tw.Close()
	archive := buf.Bytes()
	switch x := in.byte(); {
	case x%7 == 1:
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(archive)
		zw.Close()
		archive = z.Bytes()
	case x%7 == 2 && len(archive) > 0:
		archive = archive[:int(in.byte())*len(archive)/256]
	}
	return archive
}

// fuzzSparse makes a GNU old-style or PAX 1.0 sparse entry with a few
// fragments; offsets may overlap or lie past the size (archive/tar
// rejects those).
func fuzzSparse(in *fuzzInput, typ byte, name string) []byte {
	// Up to 8 MiB, so each run stays quick (holes are read as zeros), or
	// beyond any free space.
	size := int64(in.byte())<<uint(in.byte()%16) + int64(in.byte())
	if in.byte() == 0xff {
		size += 1 << 50
	}
	var frags []fragment
	for n := int(in.byte() % 4); n > 0; n-- {
		off := int64(in.byte()) << uint(in.byte()%24)
		frags = append(frags, fragment{off: off, data: in.bytes(int(in.byte() % 64))})
	}
	if typ == 'S' {
		return gnuSparse(name, size, frags)
	}
	return paxSparse(name, size, frags)
}

// FuzzUnpack: whatever the archive, Unpack into a fresh directory must not
// panic, must report any failure as an error naming the entry or the
// archive, and must neither create nor change anything outside that
// directory: the sentinel directory beside it (which archives aim at by
// relative and absolute paths, symlinks and hardlinks) keeps its exact
// state, nothing appears next to it, and /tmp gains no escape file.
func FuzzUnpack(f *testing.F) {
	for _, name := range []string{"sparse-gnu.tar", "sparse-pax.tar"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte{0}, data...))
	}
	for _, tc := range hostileCases() {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range tc.ents("/OUT") {
			h := &tar.Header{Typeflag: e.typ, Name: e.name, Linkname: e.link, Mode: e.mode, Size: int64(len(e.body)), Format: tar.FormatPAX}
			if tw.WriteHeader(h) == nil {
				tw.Write([]byte(e.body))
			}
		}
		tw.Close()
		f.Add(append([]byte{0}, buf.Bytes()...))
	}
	f.Add([]byte{1, 4, 2, 12, 1, 0, 3, 0, 0, 0, 0, 0, 0, 1, 12, 2, 0, 1, 0, 0, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		top := t.TempDir()
		base := filepath.Join(top, "base")
		out := filepath.Join(base, "outside")
		dir := filepath.Join(base, "root")
		for _, d := range []string{out, dir, filepath.Join(base, "sibling")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(out, "secret"), []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		archive := fuzzArchive(data, out)
		before := snapshot(t, top, dir)

		_, err := Unpack(context.Background(), bytes.NewReader(archive), dir)

		if err != nil && !knownUnpackError(err.Error()) {
			t.Errorf("error names neither an entry nor the archive: %v", err)
		}
		outsideUnchanged(t, before, snapshot(t, top, dir))
		if _, err := os.Lstat(filepath.Join("/tmp", escapeName)); err == nil {
			os.RemoveAll(filepath.Join("/tmp", escapeName))
			t.Errorf("an entry escaped to /tmp/%s", escapeName)
		}
	})
}

func knownUnpackError(msg string) bool {
	for _, prefix := range []string{`entry "`, "read tar: ", "read archive: ", "read gzip archive: ", "read bzip2 archive: ", "read xz archive: ", "read zstd archive: "} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}

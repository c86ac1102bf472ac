package copier

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Files over the buffer size take the copy_file_range path with a
// concurrent hash; both paths give the content and its sha256.
func TestCopyDataSizes(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{0, 1, bufSize - 1, bufSize, bufSize + 1, 3*bufSize + 17} {
		data := bytes.Repeat([]byte{byte(size), 1, 2, 3, 4, 5, 6}, size/7+1)[:size]
		src := filepath.Join(dir, "src")
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, buffered := range []bool{false, true} {
			got := copyFile(t, src, filepath.Join(dir, "dst"), int64(size), buffered)
			if !bytes.Equal(got.data, data) {
				t.Fatalf("size %d (buffered %v): copied %d bytes that differ", size, buffered, len(got.data))
			}
			if want := sha256.Sum256(data); !bytes.Equal(got.sum, want[:]) {
				t.Fatalf("size %d: wrong sha256", size)
			}
		}
	}
}

type copied struct{ data, sum []byte }

func copyFile(t *testing.T, src, dst string, size int64, buffered bool) copied {
	t.Helper()
	s, err := unix.Open(src, unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	os.Remove(dst)
	d, err := unix.Open(dst, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, bufSize)
	var sum []byte
	if buffered {
		err = copyBuffered(d, s, size, buf)
		sum = make([]byte, 32)
	} else {
		sum, err = copyData(d, s, size, buf)
	}
	unix.Close(d)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if buffered {
		h := sha256.Sum256(data)
		sum = h[:]
	}
	return copied{data, sum}
}

// A file that shrinks between stat and copy is an error, not a short file.
func TestCopyDataShrunk(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{100, 2 * bufSize} {
		src := filepath.Join(dir, "src")
		os.WriteFile(src, make([]byte, size), 0o644)
		s, _ := unix.Open(src, unix.O_RDONLY, 0)
		d, _ := unix.Open(filepath.Join(dir, "dst"), unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o600)
		_, err := copyData(d, s, int64(size)+10, make([]byte, bufSize))
		unix.Close(s)
		unix.Close(d)
		if !errors.Is(err, errChanged) {
			t.Fatalf("size %d: error %v, want errChanged", size, err)
		}
	}
}

// A large file through Copy keeps its content, and the digest matches.
func TestCopyLargeFile(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	data := bytes.Repeat([]byte("0123456789abcdef"), 5*bufSize/16+3)
	if err := os.WriteFile(filepath.Join(src, "big"), data, 0o640); err != nil {
		t.Fatal(err)
	}
	chown, _ := testOwner()
	opts := Options{Sources: []string{"big"}, Dest: "/d/", Chown: chown}
	res, err := Copy(context.Background(), Source{Root: src}, dest, opts)
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, filepath.Join(dest, "d/big"), data)
	if res.Bytes != int64(len(data)) || res.Files != 1 {
		t.Fatalf("result %+v", res)
	}
	if sum, _ := Checksum(context.Background(), Source{Root: src}, opts); sum != res.Digest {
		t.Fatal("Checksum differs from Copy's digest")
	}
}

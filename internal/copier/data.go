package copier

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
)

// bufSize is the copy buffer: files up to this size are read once into it,
// hashed and written (fewest syscalls for many small files); larger ones
// are copied in the kernel (copy_file_range, a reflink where the
// filesystem has them) while another goroutine hashes them.
const bufSize = 1 << 20

var errChanged = errors.New("file changed size while being copied")

// copyData copies the first size bytes of src to dst and returns their sha256.
func copyData(dst, src *os.File, size int64, buf []byte) ([]byte, error) {
	if size <= int64(len(buf)) {
		b := buf[:size]
		if _, err := io.ReadFull(src, b); err != nil {
			return nil, readErr(err)
		}
		sum := sha256.Sum256(b)
		if _, err := dst.Write(b); err != nil {
			return nil, fmt.Errorf("write: %w", err)
		}
		return sum[:], nil
	}
	h := sha256.New()
	hashed := make(chan error, 1)
	go func() { hashed <- hashRange(h, src, size, make([]byte, bufSize)) }()
	n, err := io.Copy(dst, io.LimitReader(src, size)) // *os.File: copy_file_range
	herr := <-hashed
	if err != nil {
		return nil, fmt.Errorf("copy: %w", err)
	}
	if herr != nil {
		return nil, herr
	}
	if n != size {
		return nil, errChanged
	}
	return h.Sum(nil), nil
}

// hashRange hashes the first size bytes of f with pread, leaving its
// offset to the concurrent copy.
func hashRange(h hash.Hash, f *os.File, size int64, buf []byte) error {
	for off := int64(0); off < size; {
		b := buf[:min(int64(len(buf)), size-off)]
		n, err := f.ReadAt(b, off)
		h.Write(b[:n])
		off += int64(n)
		if err != nil && !(err == io.EOF && off == size) {
			return readErr(err)
		}
	}
	return nil
}

func readErr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errChanged
	}
	return fmt.Errorf("read: %w", err)
}

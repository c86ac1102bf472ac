package copier

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"golang.org/x/sys/unix"
)

// bufSize is the copy buffer: files up to this size are read once into it,
// hashed and written (fewest syscalls for many small files); larger ones
// are copied in the kernel (copy_file_range, a reflink where the
// filesystem has them) while another goroutine hashes them.
const bufSize = 1 << 20

var errChanged = errors.New("file changed size while being copied")

// copyData copies the first size bytes of src to dst (raw fds: an
// *os.File costs a poller registration per file) and returns their sha256.
func copyData(dst, src int, size int64, buf []byte) ([]byte, error) {
	if size <= int64(len(buf)) {
		b := buf[:size]
		if err := preadFull(src, b, 0); err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		if err := writeFull(dst, b); err != nil {
			return nil, err
		}
		return sum[:], nil
	}
	h := sha256.New()
	hashed := make(chan error, 1)
	go func() { hashed <- hashRange(h, src, size, make([]byte, bufSize)) }()
	err := copyRange(dst, src, size, buf)
	if herr := <-hashed; err == nil {
		err = herr
	}
	if err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// copyRange copies size bytes in the kernel, or through buf where
// copy_file_range cannot (older kernels, some filesystem pairs).
func copyRange(dst, src int, size int64, buf []byte) error {
	var off int64
	for off < size {
		n, err := unix.CopyFileRange(src, &off, dst, nil, int(min(size-off, 1<<30)), 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if off == 0 && (err == unix.ENOSYS || err == unix.EXDEV || err == unix.EINVAL || err == unix.EOPNOTSUPP || err == unix.EPERM || err == unix.EIO) {
				return copyBuffered(dst, src, size, buf)
			}
			return fmt.Errorf("copy_file_range: %w", err)
		}
		if n == 0 {
			return errChanged
		}
	}
	return nil
}

func copyBuffered(dst, src int, size int64, buf []byte) error {
	for off := int64(0); off < size; {
		b := buf[:min(int64(len(buf)), size-off)]
		if err := preadFull(src, b, off); err != nil {
			return err
		}
		if err := writeFull(dst, b); err != nil {
			return err
		}
		off += int64(len(b))
	}
	return nil
}

// hashRange hashes the first size bytes of fd with pread, leaving its
// offset alone.
func hashRange(h hash.Hash, fd int, size int64, buf []byte) error {
	for off := int64(0); off < size; {
		b := buf[:min(int64(len(buf)), size-off)]
		if err := preadFull(fd, b, off); err != nil {
			return err
		}
		h.Write(b)
		off += int64(len(b))
	}
	return nil
}

func preadFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pread(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			return errChanged
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

func writeFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
	}
	return nil
}

// preader reads an fd with pread, for io.SectionReader.
type preader int

func (p preader) ReadAt(b []byte, off int64) (int, error) {
	n, err := unix.Pread(int(p), b, off)
	if err != nil {
		return n, err
	}
	if n == 0 && len(b) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

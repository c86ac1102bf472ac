package rootfs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/docker/go-units"
	"golang.org/x/sys/unix"
)

// holeBlock is the granularity at which zeros become holes: the usual
// filesystem block, so a skipped block is one the filesystem need not store.
const holeBlock = 4096

var zeroBlock [holeBlock]byte

// writeContent writes size bytes of an entry's content from r into f,
// which is empty. All-zero blocks are skipped, not written, so the holes of a
// sparse entry (archive/tar returns them as zeros) stay holes; the final
// ftruncate gives the file its size when it ends in one. It stops when ctx
// is cancelled. It returns the bytes read from r.
func writeContent(ctx context.Context, f *os.File, r io.Reader, size int64, buf []byte) (int64, error) {
	var off int64
	for off < size {
		if err := ctx.Err(); err != nil {
			return off, err
		}
		chunk := buf
		if rest := size - off; rest < int64(len(chunk)) {
			chunk = chunk[:rest]
		}
		n, err := io.ReadFull(r, chunk)
		if err := writeData(f, chunk[:n], off); err != nil {
			return off, fmt.Errorf("write: %w", err)
		}
		off += int64(n)
		if err != nil {
			return off, fmt.Errorf("read content: %w", err)
		}
	}
	if err := f.Truncate(size); err != nil {
		return off, fmt.Errorf("truncate: %w", err)
	}
	return off, nil
}

// writeData writes the non-zero blocks of p at off.
func writeData(f *os.File, p []byte, off int64) error {
	start := -1 // start of the current run of data blocks
	for i := 0; i < len(p); i += holeBlock {
		end := min(i+holeBlock, len(p))
		zero := bytes.Equal(p[i:end], zeroBlock[:end-i])
		if !zero && start < 0 {
			start = i
		}
		if zero && start >= 0 {
			if _, err := f.WriteAt(p[start:i], off+int64(start)); err != nil {
				return err
			}
			start = -1
		}
	}
	if start >= 0 {
		_, err := f.WriteAt(p[start:], off+int64(start))
		return err
	}
	return nil
}

// checkSpace refuses an entry of size bytes before anything is written
// when the filesystem holding dirfd has less free space (for unprivileged
// users) than that: a small archive can declare a terabyte-sized sparse
// file, and even with its holes kept a file that does not fit would only
// fill the disk before failing.
func checkSpace(dirfd int, size int64) error {
	if size <= holeBlock {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(dirfd, &st); err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	free := st.Bavail * uint64(st.Bsize)
	if uint64(size) > free {
		return fmt.Errorf("%s of content (%d bytes), more than the %s free on the target filesystem", units.BytesSize(float64(size)), size, units.BytesSize(float64(free)))
	}
	return nil
}

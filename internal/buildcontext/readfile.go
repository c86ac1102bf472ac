package buildcontext

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/safefile"
)

// MaxFileSize bounds the Dockerfile and the ignore file, as BuildKit's
// frontend does (frontend/dockerui/readfile.go: its 16 MiB gRPC message
// limit).
const MaxFileSize = 16 << 20

// openHost returns an O_PATH handle on a path the user named (-f): nothing
// is read and no open side effect (a FIFO's wait for a writer, a device's)
// can happen before the type is checked.
func openHost(path string) (*os.File, error) {
	return os.OpenFile(path, unix.O_PATH|unix.O_CLOEXEC, 0)
}

// openInRoot returns an O_PATH handle on rel resolved inside root as if
// chrooted there (BuildKit reads the context's files the same way), so a
// symlinked Dockerfile or .dockerignore cannot reach outside the context.
func openInRoot(root *os.File, rel string) (*os.File, error) {
	return pathrs.OpenatInRoot(root, rel)
}

// readRegular reads the file behind an O_PATH handle, refusing anything but
// a regular file of at most MaxFileSize bytes. name is for messages.
func readRegular(h *os.File, name string) ([]byte, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(h.Fd()), &st); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := safefile.CheckRegular(st.Mode, name); err != nil {
		return nil, err
	}
	if st.Size > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than the maximum of %d bytes", name, MaxFileSize)
	}
	// The handle names this very inode, so the check above holds for
	// what is read.
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	return readLimited(f, name)
}

// readLimited reads r to its end, refusing more than MaxFileSize bytes.
func readLimited(r io.Reader, name string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than the maximum of %d bytes", name, MaxFileSize)
	}
	return data, nil
}

// readFile opens name with open and reads it as readRegular does.
func readFile(open opener, path, name string) ([]byte, error) {
	h, err := open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	defer h.Close()
	return readRegular(h, name)
}

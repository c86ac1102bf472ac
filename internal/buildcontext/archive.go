package buildcontext

import (
	"archive/tar"
	"bytes"
	"compress/bzip2"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/ulikunitz/xz"
)

// headerSize is how much of stdin decides between an archive and a
// Dockerfile: two tar blocks, as the docker CLI peeks
// (cli/command/image/build/context.go, detectArchiveReader).
const headerSize = 1024

type compression int

const (
	uncompressed compression = iota
	gzipped
	bzipped
	xzed
	zstded
)

// detectCompression looks for the magic numbers docker's
// go-archive/compression.Detect knows.
func detectCompression(head []byte) compression {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b, 0x08}):
		return gzipped
	case bytes.HasPrefix(head, []byte("BZh")):
		return bzipped
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return xzed
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return zstded
	}
	return uncompressed
}

// isArchive reports whether stdin's first bytes start a compressed stream
// or a tar header, as the docker CLI and buildx decide that `build -` got
// a context rather than a Dockerfile.
func isArchive(head []byte) bool {
	if detectCompression(head) != uncompressed {
		return true
	}
	_, err := tar.NewReader(bytes.NewReader(head)).Next()
	return err == nil
}

// decompress returns the tar stream inside r; head is r's first bytes.
func decompress(r io.Reader, head []byte) (io.Reader, func(), error) {
	switch detectCompression(head) {
	case gzipped:
		zr, err := pgzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case bzipped:
		return bzip2.NewReader(r), func() {}, nil
	case xzed:
		zr, err := xz.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("xz: %w", err)
		}
		return zr, func() {}, nil
	case zstded:
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return r, func() {}, nil
}

// Package compression recognises and decompresses the compressed tar
// streams docker accepts wherever it takes an archive (a build context on
// stdin, ADD, a base image tarball): gzip, bzip2, xz and zstd, told apart
// by the magic numbers moby/go-archive's compression.Detect knows.
package compression

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/ulikunitz/xz"
)

// Kind is a compression format, or None.
type Kind int

const (
	None Kind = iota
	Gzip
	Bzip2
	Xz
	Zstd
)

func (k Kind) String() string {
	switch k {
	case Gzip:
		return "gzip"
	case Bzip2:
		return "bzip2"
	case Xz:
		return "xz"
	case Zstd:
		return "zstd"
	}
	return "uncompressed"
}

// HeadSize is how many leading bytes Detect needs to tell every format
// (a zstd skippable frame's header is the longest).
const HeadSize = 8

var (
	bzip2Magic = []byte{0x42, 0x5A, 0x68}
	gzipMagic  = []byte{0x1F, 0x8B, 0x08}
	xzMagic    = []byte{0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00}
	zstdMagic  = []byte{0x28, 0xB5, 0x2F, 0xFD}
)

// Detect tells the format of a stream from its first bytes, as
// go-archive's compression.Detect (which BuildKit and the docker CLI use).
// Anything else, a short head included, is None.
func Detect(head []byte) Kind {
	switch {
	case bytes.HasPrefix(head, bzip2Magic):
		return Bzip2
	case bytes.HasPrefix(head, gzipMagic):
		return Gzip
	case bytes.HasPrefix(head, xzMagic):
		return Xz
	case bytes.HasPrefix(head, zstdMagic):
		return Zstd
	case len(head) >= 8 && binary.LittleEndian.Uint32(head[:4])&0xFFFFFFF0 == 0x184D2A50:
		return Zstd // a skippable frame (RFC 8878, 3.1.2) may come first
	}
	return None
}

// NewReader returns a reader of what r holds compressed as k (r itself for
// None). Gzip and zstd are decoded ahead in goroutines, for speed on a
// stream read to its end: Close stops them, so the caller must call it, and
// may go on reading r only after it. Close never closes r.
func NewReader(r io.Reader, k Kind) (io.ReadCloser, error) {
	return newReader(r, k, true)
}

// NewSerialReader is NewReader without read-ahead: it decodes only as much
// as is read, for a look at the start of a stream.
func NewSerialReader(r io.Reader, k Kind) (io.ReadCloser, error) {
	return newReader(r, k, false)
}

func newReader(r io.Reader, k Kind, ahead bool) (io.ReadCloser, error) {
	switch k {
	case Gzip:
		if ahead {
			return pgzip.NewReader(r)
		}
		return gzip.NewReader(r)
	case Bzip2:
		return io.NopCloser(bzip2.NewReader(r)), nil
	case Xz:
		xr, err := xz.NewReader(r)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(xr), nil
	case Zstd:
		var opts []zstd.DOption // by default up to min(4, GOMAXPROCS) blocks in flight
		if !ahead {
			opts = append(opts, zstd.WithDecoderConcurrency(1)) // synchronous
		}
		zr, err := zstd.NewReader(r, opts...)
		if err != nil {
			return nil, err
		}
		return zstdReader{zr}, nil
	}
	return io.NopCloser(r), nil
}

// zstdReader names the format in its errors, as the other formats' readers
// do ("gzip: invalid checksum"); the zstd library's do not.
type zstdReader struct{ d *zstd.Decoder }

func (z zstdReader) Read(p []byte) (int, error) {
	n, err := z.d.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("zstd: %w", err)
	}
	return n, err
}

func (z zstdReader) Close() error {
	z.d.Close()
	return nil
}

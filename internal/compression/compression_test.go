package compression

import (
	"bytes"
	"compress/gzip"
	"io"
	"math/rand"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

const payload = "hello, compression\n"

// bzip2Payload is payload compressed by bzip2(1) -9: Go has no bzip2 writer.
var bzip2Payload = []byte{
	0x42, 0x5a, 0x68, 0x39, 0x31, 0x41, 0x59, 0x26, 0x53, 0x59, 0x72, 0xa5,
	0x16, 0x62, 0x00, 0x00, 0x03, 0x51, 0x80, 0x00, 0x10, 0x40, 0x04, 0x0a,
	0x67, 0xd8, 0x00, 0x20, 0x00, 0x31, 0x00, 0x00, 0x0a, 0x60, 0x68, 0x04,
	0xa5, 0x28, 0xc7, 0xd9, 0xb1, 0xe2, 0xab, 0xcd, 0x03, 0x85, 0xdc, 0x91,
	0x4e, 0x14, 0x24, 0x1c, 0xa9, 0x45, 0x98, 0x80,
}

// compress returns data compressed as k (not for Bzip2).
func compress(t *testing.T, k Kind, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	var err error
	switch k {
	case None:
		return data
	case Gzip:
		w = gzip.NewWriter(&buf)
	case Xz:
		w, err = xz.NewWriter(&buf)
	case Zstd:
		w, err = zstd.NewWriter(&buf)
	default:
		t.Fatalf("no writer for %v", k)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func streams(t *testing.T) map[Kind][]byte {
	m := map[Kind][]byte{Bzip2: bzip2Payload}
	for _, k := range []Kind{None, Gzip, Xz, Zstd} {
		m[k] = compress(t, k, []byte(payload))
	}
	return m
}

func TestDetect(t *testing.T) {
	for k, data := range streams(t) {
		if got := Detect(data[:min(len(data), HeadSize)]); got != k {
			t.Errorf("Detect(%v stream) = %v", k, got)
		}
	}
	skippable := []byte{0x5E, 0x2A, 0x4D, 0x18, 0, 0, 0, 0} // magic 0x184D2A5E, empty frame
	for _, tc := range []struct {
		name string
		head []byte
		want Kind
	}{
		{"empty", nil, None},
		{"gzip magic without deflate method", []byte{0x1F, 0x8B, 0x00, 0}, None},
		{"truncated xz magic", []byte{0xFD, '7', 'z', 'X', 'Z'}, None},
		{"zstd skippable frame first", skippable, Zstd},
		{"short skippable frame", skippable[:7], None},
		{"tar", []byte("etc/\x00\x00\x00\x00"), None},
	} {
		if got := Detect(tc.head); got != tc.want {
			t.Errorf("%s: Detect = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestReadersDecompress(t *testing.T) {
	for k, data := range streams(t) {
		for name, open := range map[string]func(io.Reader, Kind) (io.ReadCloser, error){"NewReader": NewReader, "NewSerialReader": NewSerialReader} {
			r, err := open(bytes.NewReader(data), k)
			if err != nil {
				t.Fatalf("%s(%v): %v", name, k, err)
			}
			got, err := io.ReadAll(r)
			if err != nil || string(got) != payload {
				t.Errorf("%s(%v): %q, %v; want %q", name, k, got, err, payload)
			}
			if err := r.Close(); err != nil {
				t.Errorf("%s(%v): Close: %v", name, k, err)
			}
		}
	}
}

// TestCorruptStreamsFail: a broken stream is an error that names its format.
func TestCorruptStreamsFail(t *testing.T) {
	garbage := bytes.Repeat([]byte{0x55}, 4096)
	for _, k := range []Kind{Gzip, Bzip2, Xz, Zstd} {
		r, err := NewReader(bytes.NewReader(garbage), k)
		if err == nil {
			_, err = io.ReadAll(r)
			r.Close()
		}
		if err == nil || !strings.Contains(err.Error(), k.String()) {
			t.Errorf("%v: garbage gave %v, want an error naming the format", k, err)
		}
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestReadAheadStops: NewReader decodes ahead of the reader and Close ends
// the goroutines doing it; NewSerialReader reads no further than needed.
func TestReadAheadStops(t *testing.T) {
	big := make([]byte, 32<<20)
	rand.New(rand.NewSource(1)).Read(big) // incompressible: input read ≈ output decoded
	for _, k := range []Kind{Gzip, Zstd} {
		data := compress(t, k, big)
		before := runtime.NumGoroutine()
		for name, open := range map[string]func(io.Reader, Kind) (io.ReadCloser, error){"NewReader": NewReader, "NewSerialReader": NewSerialReader} {
			cr := &countingReader{r: bytes.NewReader(data)}
			r, err := open(cr, k)
			if err != nil {
				t.Fatal(err)
			}
			head := make([]byte, 512)
			if _, err := io.ReadFull(r, head); err != nil || !bytes.Equal(head, big[:512]) {
				t.Fatalf("%s(%v): first bytes wrong: %v", name, k, err)
			}
			time.Sleep(100 * time.Millisecond) // let a read-ahead run
			if name == "NewSerialReader" && cr.n > 1<<20 {
				t.Errorf("%s(%v) read %d bytes of input for 512 of output", name, k, cr.n)
			}
			if err := r.Close(); err != nil {
				t.Errorf("%s(%v): Close: %v", name, k, err)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("%v: %d goroutines after Close, %d before:\n%s", k, n, before, buf[:runtime.Stack(buf, true)])
		}
	}
}

package copier

import (
	"crypto/sha256"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/compression"
)

// checksummer is the visitor of Checksum: it reads and hashes regular
// files (and archives) and writes nothing.
type checksummer struct{ buf []byte }

func (c *checksummer) top() error          { return nil }
func (c *checksummer) dir(*entry) error    { return nil }
func (c *checksummer) endDir(*entry) error { return nil }

func (c *checksummer) leaf(_ *match, e *entry) ([]byte, error) {
	if e.fd < 0 || e.hardlink != "" || e.kind() != unix.S_IFREG {
		return nil, nil
	}
	return c.hash(e)
}

func (c *checksummer) archive(_ *match, e *entry, _ compression.Kind) ([]byte, error) {
	return c.hash(e)
}

func (c *checksummer) hash(e *entry) ([]byte, error) {
	if c.buf == nil {
		c.buf = make([]byte, bufSize)
	}
	h := sha256.New()
	if err := hashRange(h, e.fd, e.st.Size, c.buf); err != nil {
		return nil, fmt.Errorf("/%s: %w", e.real, err)
	}
	return h.Sum(nil), nil
}

package buildcontext

import (
	"archive/tar"
	"bytes"

	"github.com/stepexec/stepexec/internal/compression"
)

// headerSize is how much of stdin decides between an archive and a
// Dockerfile: two tar blocks, as the docker CLI peeks
// (cli/command/image/build/context.go, detectArchiveReader).
const headerSize = 1024

// isArchive reports whether stdin's first bytes start a compressed stream
// or a tar header, as the docker CLI and buildx decide that `build -` got
// a context rather than a Dockerfile.
func isArchive(head []byte) bool {
	if compression.Detect(head) != compression.None {
		return true
	}
	_, err := tar.NewReader(bytes.NewReader(head)).Next()
	return err == nil
}

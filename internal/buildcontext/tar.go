package buildcontext

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/compression"
)

// OpenTar opens the context of `build -`: what r (stdin) holds, as the
// docker CLI and buildx read it. A tar archive — plain, gzip, bzip2, xz or
// zstd — is unpacked into a private directory under tmp, and
// opts.DockerfilePath (default "Dockerfile", else "dockerfile") names the
// Dockerfile inside it. Anything else is taken as the Dockerfile itself,
// with an empty context. "-f -" is refused: stdin cannot be both.
//
// As with BuildKit, .dockerignore does not apply to an archive context
// (dockerui.MainContext: only a local context gets exclude patterns), so
// Ignore returns nil. The unpacked files belong to the current user; see
// unpack for what an archive may not do. On error nothing is left under
// tmp; otherwise Close removes the directory.
func OpenTar(ctx context.Context, r io.Reader, tmp string, opts Options) (*Context, error) {
	if opts.DockerfilePath == "-" {
		return nil, errors.New("-f -: stdin cannot be both the build context and the Dockerfile")
	}
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(headerSize)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("read the build context from stdin: %w", err)
	}
	if len(head) == 0 {
		return nil, errors.New("build context from stdin: stdin is empty (expected a tar archive or a Dockerfile)")
	}
	archive := isArchive(head)
	if !archive && opts.DockerfilePath != "" {
		// The docker CLI's words: stdin is a Dockerfile, and so is -f.
		return nil, fmt.Errorf("ambiguous Dockerfile source: stdin is a Dockerfile (not a tar archive) and -f %s names one too", opts.DockerfilePath)
	}

	top, err := os.MkdirTemp(tmp, "stepexec-context-")
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	c := &Context{Dir: filepath.Join(top, "context"), tmp: top}
	done := false
	defer func() {
		if !done {
			c.Close()
		}
	}()
	// The context's root is a fresh 0755 directory, as BuildKit's unpack
	// target is (it skips an archive's "." entry).
	if err := os.Mkdir(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	if err := os.Chmod(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	if c.Dir, err = filepath.Abs(c.Dir); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}

	if !archive {
		data, err := readLimited(br, "the Dockerfile on stdin")
		if err != nil {
			return nil, err
		}
		c.dockerfile = Dockerfile{Name: stdinName, Data: data}
		done = true
		return c, nil
	}
	kind := compression.Detect(head)
	zr, err := compression.NewReader(br, kind)
	if err != nil {
		return nil, fmt.Errorf("build context from stdin: %v: %w", kind, err)
	}
	defer zr.Close()
	if err := unpack(ctx, zr, c.Dir); err != nil {
		return nil, fmt.Errorf("build context from stdin: %w", err)
	}
	if err := c.readArchiveDockerfile(opts.DockerfilePath); err != nil {
		return nil, err
	}
	done = true
	return c, nil
}

// readArchiveDockerfile reads the Dockerfile from the unpacked archive,
// resolved inside it.
func (c *Context) readArchiveDockerfile(p string) error {
	if p == "" {
		p = defaultDockerfile
	}
	root, err := os.OpenFile(c.Dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("build context: %w", err)
	}
	defer root.Close()
	inRoot := func(rel string) (*os.File, error) { return openInRoot(root, rel) }
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		rel = "."
	}
	c.dockerfile, err = findDockerfile(inRoot, rel, func(rel string) string { return rel })
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("build context from stdin: the archive has no %s (-f names a path inside it)", rel)
	}
	if err != nil {
		return fmt.Errorf("build context from stdin: %w", err)
	}
	return nil
}

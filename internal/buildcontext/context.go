// Package buildcontext opens a build context — a directory, or a tar
// stream unpacked into a private temporary directory — and reads what the
// builder needs before any step runs: the Dockerfile and the .dockerignore
// rules, found as docker build (BuildKit) finds them.
package buildcontext

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"golang.org/x/sys/unix"
)

// Options says where the Dockerfile is.
type Options struct {
	// DockerfilePath is -f. For OpenDir it is a host path (relative to the
	// working directory; it may lie outside the context), or "-" for a
	// Dockerfile read from Stdin. For OpenTar it is a path inside the
	// archive. "" means "Dockerfile" in the context, or "dockerfile" when
	// that does not exist.
	DockerfilePath string
	// Stdin is what "-f -" reads.
	Stdin io.Reader
}

// Dockerfile is the Dockerfile's text and the name errors give it.
type Dockerfile struct {
	Name string // the path as given, CONTEXT/Dockerfile, or "<stdin>"
	Data []byte
}

// Context is an opened build context.
type Context struct {
	// Dir is the absolute path of a directory holding the context's files.
	Dir string

	dockerfile Dockerfile
	ignore     []string // the ignore file's patterns, checked by patternmatcher.New
	ignoreFile string
	tmp        string // the temporary directory Close removes; "" for OpenDir
}

const (
	defaultDockerfile = "Dockerfile"
	ignoreName        = ".dockerignore"
	stdinName         = "<stdin>"
)

// opener returns an O_PATH handle on a path.
type opener func(string) (*os.File, error)

// ignoreCandidate is a place an ignore file may be: path as open takes it,
// name for messages.
type ignoreCandidate struct {
	open       opener
	path, name string
}

// OpenDir opens a context directory. The Dockerfile and the ignore file
// are read now, so they are available even when .dockerignore excludes them
// from the context, and any problem with them is reported before the build.
func OpenDir(dir string, opts Options) (*Context, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("build context %s: %w", dir, err)
	}
	st, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("build context %s: no such directory", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("build context %s is not a directory", dir)
	}
	root, err := os.OpenFile(abs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	defer root.Close()
	inRoot := func(rel string) (*os.File, error) { return openInRoot(root, rel) }

	c := &Context{Dir: abs}
	beside, err := c.readDockerfile(dir, inRoot, opts)
	if err != nil {
		return nil, err
	}
	// The first ignore file found wins, as in BuildKit's dockerui.
	candidates := append(beside, ignoreCandidate{inRoot, ignoreName, filepath.Join(dir, ignoreName)})
	for _, cand := range candidates {
		data, found, err := readOptional(cand.open, cand.path, cand.name)
		if err != nil {
			return nil, err
		}
		if found {
			c.ignoreFile = cand.name
			if c.ignore, err = parseIgnore(data, cand.name); err != nil {
				return nil, err
			}
			break
		}
	}
	return c, nil
}

// readDockerfile reads the Dockerfile of a context directory and returns
// where BuildKit looks for its own ignore file: <Dockerfile>.dockerignore
// beside it, by the name it was asked for (not the "dockerfile" fallback).
// A Dockerfile from stdin has none.
func (c *Context) readDockerfile(dir string, inRoot opener, opts Options) ([]ignoreCandidate, error) {
	var err error
	switch p := opts.DockerfilePath; p {
	case "-":
		if opts.Stdin == nil {
			return nil, errors.New("-f -: no standard input to read the Dockerfile from")
		}
		data, err := readLimited(opts.Stdin, "the Dockerfile on stdin")
		if err != nil {
			return nil, err
		}
		c.dockerfile = Dockerfile{Name: stdinName, Data: data}
		return nil, nil
	case "":
		// Without -f the Dockerfile's directory is the context itself.
		c.dockerfile, err = findDockerfile(inRoot, defaultDockerfile, func(rel string) string { return filepath.Join(dir, rel) })
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("build context %s has no Dockerfile (name one with -f)", dir)
		}
		rel := defaultDockerfile + ignoreName
		return []ignoreCandidate{{inRoot, rel, filepath.Join(dir, rel)}}, err
	default:
		c.dockerfile, err = findDockerfile(openHost, p, func(p string) string { return p })
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("-f %s: no such file", p)
		}
		return []ignoreCandidate{{openHost, p + ignoreName, p + ignoreName}}, err
	}
}

// findDockerfile reads the Dockerfile at p, or, as BuildKit does
// (frontend/dockerui/config.go, moby/moby#10858), "dockerfile" in the same
// directory when p's base name is "Dockerfile" and it does not exist. A
// missing file gives an error wrapping fs.ErrNotExist.
func findDockerfile(open opener, p string, display func(string) string) (Dockerfile, error) {
	data, err := readFile(open, p, display(p))
	if errors.Is(err, fs.ErrNotExist) && path.Base(p) == defaultDockerfile {
		lower := path.Join(path.Dir(p), strings.ToLower(defaultDockerfile))
		if d, lerr := readFile(open, lower, display(lower)); !errors.Is(lerr, fs.ErrNotExist) {
			return Dockerfile{Name: display(lower), Data: d}, lerr
		}
	}
	if err != nil {
		return Dockerfile{}, err
	}
	return Dockerfile{Name: display(p), Data: data}, nil
}

// readOptional reads an ignore file; a missing one is not an error, an
// unreadable or special one is.
func readOptional(open opener, p, name string) ([]byte, bool, error) {
	data, err := readFile(open, p, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return data, true, nil
}

// parseIgnore applies docker's ignore-file rules (comments, "!"
// exceptions, "**", a leading "/" meaning the context root) through the
// reader and matcher docker itself uses, and returns the patterns.
func parseIgnore(data []byte, name string) ([]string, error) {
	patterns, err := ignorefile.ReadAll(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if _, err := patternmatcher.New(patterns); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return patterns, nil
}

// Dockerfile returns the Dockerfile read when the context was opened.
func (c *Context) Dockerfile() Dockerfile { return c.dockerfile }

// Ignore returns the context's .dockerignore rules, nil when there are
// none. Paths given to it are relative to Dir, slash-separated. Each call
// returns a new matcher: a PatternMatcher compiles its patterns lazily and
// is not safe for concurrent use, and stages may copy concurrently.
func (c *Context) Ignore() *patternmatcher.PatternMatcher {
	if len(c.ignore) == 0 {
		return nil
	}
	pm, err := patternmatcher.New(c.ignore)
	if err != nil {
		panic(fmt.Sprintf("buildcontext: patterns checked at open fail now: %v", err))
	}
	return pm
}

// IgnorePatterns returns the ignore file's patterns as docker reads them
// (e.g. for fsutil-style walkers or a cache key); nil when there are none.
func (c *Context) IgnorePatterns() []string { return slices.Clone(c.ignore) }

// IgnoreFile names the ignore file the rules came from ("" when none), for
// messages.
func (c *Context) IgnoreFile() string { return c.ignoreFile }

// Close removes the temporary directory of a context opened with OpenTar;
// for a directory context it does nothing.
func (c *Context) Close() error {
	if c.tmp == "" {
		return nil
	}
	err := removeTree(c.tmp)
	c.tmp = ""
	return err
}

// removeTree removes dir and everything below it, making directories
// writable first: an archive may have left some read-only, which stops an
// unprivileged os.RemoveAll. dir is private, so nothing races the walk, and
// WalkDir follows no symlink.
func removeTree(dir string) error {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove build context %s: %w", dir, err)
	}
	return nil
}

// Open opens the context the CLI's argument names, as `docker build ARG`
// does: "-" is OpenTar of opts.Stdin, an existing path OpenDir; a URL or
// git remote that is not a local path is refused (not supported yet).
func Open(ctx context.Context, arg, tmp string, opts Options) (*Context, error) {
	if arg == "-" {
		if opts.Stdin == nil {
			return nil, errors.New("build context -: no standard input to read it from")
		}
		return OpenTar(ctx, opts.Stdin, tmp, opts)
	}
	if _, err := os.Lstat(arg); err != nil && isRemote(arg) {
		return nil, fmt.Errorf("build context %s: remote contexts (URLs, git repositories) are not supported; download or clone it and pass the directory", arg)
	}
	return OpenDir(arg, opts)
}

// isRemote reports whether a context argument looks like what docker
// fetches instead of reading a directory.
func isRemote(arg string) bool {
	for _, prefix := range []string{"http://", "https://", "git://", "git@", "github.com/"} {
		if strings.HasPrefix(arg, prefix) {
			return true
		}
	}
	return false
}

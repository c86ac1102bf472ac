package copier

import (
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/moby/patternmatcher"
	"golang.org/x/sys/unix"
)

// spec is one source after --parents splitting (BuildKit's
// dockerfile2llb.dispatchCopy).
type spec struct {
	given   string // as written, for messages
	path    string // "/"-rooted and cleaned; may hold wildcards
	include string // --parents: the pattern below path that entries must match ("" = all)
}

func specsOf(sources []string, parents bool) []spec {
	out := make([]spec, 0, len(sources))
	for _, s := range sources {
		sp := spec{given: s, path: cleanSource(s)}
		if parents {
			// The optional pivot: what is left of "/./" is the directory
			// copied from, what is right of it is kept below Dest.
			parent, pattern, ok := strings.Cut(s, "/./")
			if !ok {
				parent, pattern = "/", s
			}
			sp.path = cleanSource(parent)
			sp.include = strings.TrimPrefix(path.Clean("/"+pattern), "/")
		}
		out = append(out, sp)
	}
	return out
}

// cleanSource roots and cleans a source path as BuildKit's llb does
// (path.Join("/", path.Clean(p))): ".." stops at the root and a trailing
// "/" or "/." is dropped.
func cleanSource(s string) string { return path.Join("/", path.Clean(s)) }

// required reports whether the spec names one path that must exist: no
// wildcard anywhere (BuildKit's RequiredPaths for --parents; a plain
// source's checksum otherwise).
func (sp spec) required() bool { return !containsWildcards(sp.path) && !containsWildcards(sp.include) }

// containsWildcards is fsutil's rule: *, ? or [ not escaped by a backslash.
func containsWildcards(name string) bool {
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '\\':
			i++
		case '*', '?', '[':
			return true
		}
	}
	return false
}

func quoteSource(s string) string { return fmt.Sprintf("source %q", s) }

// sourceTree is the source root with its .dockerignore rules.
type sourceTree struct {
	root   *root
	ignore *patternmatcher.PatternMatcher
}

// match is one path a source names, resolved in the source root.
type match struct {
	name string // as named, relative to the root ("" = the root); its base names a file's destination
	rel  string // the real path after following symlinks
	l    *lookup
}

func (m *match) close() { m.l.close() }

func (m *match) isDir() bool { return m.l.isDir() }

// ignored reports whether .dockerignore leaves rel out of the context. A
// directory with excluded children ("!" patterns) may still be there, so
// it counts as present.
func (s *sourceTree) ignored(rel string, dir bool) (bool, error) {
	if s.ignore == nil || rel == "" {
		return false, nil
	}
	ok, err := s.ignore.MatchesOrParentMatches(rel)
	if err != nil {
		return false, fmt.Errorf(".dockerignore: %w", err)
	}
	return ok && !(dir && s.ignore.Exclusions()), nil
}

var errIgnored = errors.New("excluded by .dockerignore")

// resolveMatch follows p (a cleaned source path, no wildcards) in the root.
// It must exist and not be ignored, nor be reached through an ignored
// symlink; the error then names the source as BuildKit's "not found" does.
func (s *sourceTree) resolveMatch(given, p string) (*match, error) {
	crossed := false
	l, err := s.root.resolve(p, true, func(rel string) error {
		crossed = true
		if ign, err := s.ignored(rel, false); err != nil || ign {
			return errors.Join(err, errIgnored)
		}
		return nil
	})
	if err == nil && l.st == nil {
		l.close()
		err = os.ErrNotExist
	}
	if err == nil {
		ign, ierr := s.ignored(l.rel(), l.isDir())
		if ierr != nil || ign {
			l.close()
			err = errors.Join(ierr, errIgnored)
		}
	}
	if err != nil {
		return nil, notFound(given, err, crossed)
	}
	return &match{name: strings.TrimPrefix(p, "/"), rel: l.rel(), l: l}, nil
}

func notFound(given string, err error, crossed bool) error {
	switch {
	case errors.Is(err, errIgnored):
		return fmt.Errorf("%s: not found: %w", quoteSource(given), err)
	case errors.Is(err, os.ErrNotExist) && crossed:
		return fmt.Errorf("%s: not found (symlinks are followed inside the source directory, as in a chroot)", quoteSource(given))
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s: not found", quoteSource(given))
	}
	return fmt.Errorf("%s: %w", quoteSource(given), err)
}

// matches returns the paths a spec names: itself, or what its wildcard
// matches (possibly nothing: BuildKit's AllowEmptyWildcard).
func (s *sourceTree) matches(sp spec) ([]*match, error) {
	if !containsWildcards(sp.path) {
		m, err := s.resolveMatch(sp.given, sp.path)
		if err != nil {
			return nil, err
		}
		if sp.include != "" && sp.required() {
			// --parents without wildcards: the kept path must exist too.
			probe, err := s.resolveMatch(sp.given, path.Join(sp.path, sp.include))
			if err != nil {
				m.close()
				return nil, err
			}
			probe.close()
		}
		return []*match{m}, nil
	}
	names, err := s.expand(sp)
	if err != nil {
		return nil, err
	}
	var out []*match
	for _, name := range names {
		m, err := s.resolveMatch(sp.given, "/"+name)
		if err != nil {
			for _, o := range out {
				o.close()
			}
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// expand resolves a wildcard source as fsutil's ResolveWildcards: the part
// before the first element with a wildcard is followed in root (it must
// exist), then the entries below it are matched element by element with
// path.Match, without following symlinks on the way, in lexical order. A
// matched directory is not searched further.
func (s *sourceTree) expand(sp spec) ([]string, error) {
	elems := components(sp.path)
	i := 0
	for i < len(elems) && !containsWildcards(elems[i]) {
		i++
	}
	base, pattern := "/"+strings.Join(elems[:i], "/"), elems[i:]
	m, err := s.resolveMatch(sp.given, base)
	if err != nil {
		return nil, err
	}
	defer m.close()
	if !m.isDir() {
		return nil, nil
	}
	fd, err := unix.Openat(m.l.parent, dotIfEmpty(m.l.name), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: open /%s: %w", quoteSource(sp.given), m.rel, err)
	}
	var out []string
	err = s.expandDir(fd, m.rel, pattern, &out)
	return out, err
}

func (s *sourceTree) expandDir(fd int, rel string, pattern []string, out *[]string) error {
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read /%s: %w", rel, err)
	}
	sort.Strings(names)
	for _, n := range names {
		if ok, err := path.Match(pattern[0], n); err != nil {
			return fmt.Errorf("pattern %q: %w", pattern[0], err)
		} else if !ok {
			continue
		}
		child := joinRel(rel, n)
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "lstat", Path: "/" + child, Err: err}
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if ign, err := s.ignored(child, isDir); err != nil {
			return err
		} else if ign {
			continue
		}
		if len(pattern) == 1 {
			*out = append(*out, child)
			continue
		}
		if !isDir {
			continue
		}
		cfd, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: "/" + child, Err: err}
		}
		if err := s.expandDir(cfd, child, pattern[1:], out); err != nil {
			return err
		}
	}
	return nil
}

func dotIfEmpty(name string) string {
	if name == "" {
		return "."
	}
	return name
}

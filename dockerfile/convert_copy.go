package dockerfile

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/patternmatcher"
	digest "github.com/opencontainers/go-digest"
	mode "github.com/tonistiigi/dchapes-mode"
)

// copyFields is what COPY and ADD share.
type copyFields struct {
	instructions.SourcesAndDest
	add                bool
	from, chown, chmod string
	link, parents      bool
	excludes           []string
	checksum           string
	unpack, keepGit    *bool
}

// convertCopy converts COPY and ADD, checking what can be checked before
// the build: flag syntax, sources that cannot be used, stage references.
func (g *Graph) convertCopy(f copyFields, pn parsedNode, s *Stage, problems *errList) (Command, error) {
	name := "COPY"
	if f.add {
		name = "ADD"
	}
	c := &Copy{Add: f.add, Sources: append([]string(nil), f.SourcePaths...), Dest: f.DestPath, From: f.from,
		Chown: f.chown, Chmod: f.chmod, Link: f.link, Parents: f.parents, Excludes: append([]string(nil), f.excludes...),
		Checksum: f.checksum, Unpack: f.unpack, KeepGit: f.keepGit}
	for _, sc := range f.SourceContents {
		c.Inline = append(c.Inline, InlineFile{Name: sc.Path, Data: sc.Data, Expand: sc.Expand})
	}
	dep, err := g.resolveRef("--from", f.from, s)
	if err != nil {
		return nil, fmt.Errorf("%s %w", name, err)
	}
	c.FromStage = dep
	if err := checkCopyFlags(c); err != nil {
		return nil, fmt.Errorf("%s %w", name, err)
	}
	for _, src := range c.Sources {
		if err := checkSource(c, src, problems, pn.loc); err != nil {
			return nil, fmt.Errorf("%s %w", name, err)
		}
	}
	return c, nil
}

// checkCopyFlags validates --chmod, --chown, --exclude and --checksum as
// written (those holding variables are checked again after expansion by
// CheckCopy).
func checkCopyFlags(c *Copy) error {
	if !strings.Contains(c.Chmod, "$") {
		if _, err := ParseChmod(c.Chmod); err != nil {
			return err
		}
	}
	if !strings.Contains(c.Chown, "$") {
		if err := checkChown(c.Chown, c.Link); err != nil {
			return err
		}
	}
	for _, p := range c.Excludes {
		if _, err := patternmatcher.New([]string{p}); err != nil {
			return fmt.Errorf("--exclude=%s: %w", p, err)
		}
	}
	if c.Checksum != "" {
		if len(c.Sources) != 1 || len(c.Inline) != 0 {
			return errors.New("--checksum needs exactly one source")
		}
		if !strings.Contains(c.Checksum, "$") {
			if _, err := digest.Parse(c.Checksum); err != nil {
				return fmt.Errorf("--checksum=%s: %w (expected e.g. sha256:<64 hex digits>)", c.Checksum, err)
			}
		}
	}
	return nil
}

// checkSource refuses a source COPY or ADD cannot use.
func checkSource(c *Copy, src string, problems *errList, loc Location) error {
	if isGitSource(src) {
		if !c.Add {
			return fmt.Errorf("source %s is a git repository; only ADD can fetch one", src)
		}
		problems.add(loc, fmt.Errorf("ADD %s: adding a git repository is not supported yet; clone it into the build context and COPY it", src))
		return nil
	}
	if IsURL(src) {
		if !c.Add {
			return fmt.Errorf("source %s is a URL; use ADD to fetch URLs", src)
		}
		if c.From != "" {
			return fmt.Errorf("source %s is a URL; it cannot be combined with --from", src)
		}
		return nil
	}
	if c.Checksum != "" {
		return fmt.Errorf("--checksum needs an http(s) source, not %s", src)
	}
	return nil
}

// isGitSource reports whether src names a git repository the way
// BuildKit's dfgitutil recognizes one (git@host:repo, git://, github.com/…,
// an http(s) URL of a .git path).
func isGitSource(src string) bool {
	if strings.HasPrefix(src, "git@") || strings.HasPrefix(src, "git://") || strings.HasPrefix(src, "github.com/") {
		return true
	}
	if !IsURL(src) {
		return false
	}
	p, _, _ := strings.Cut(src, "#")
	p, _, _ = strings.Cut(p, "?")
	return strings.HasSuffix(p, ".git")
}

// IsURL reports whether an ADD source is fetched over HTTP(S).
func IsURL(src string) bool {
	return strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")
}

// Chmod is a parsed --chmod: an octal mode, or a symbolic one applied to
// each file's own mode (BuildKit's dchapes-mode syntax, e.g. "u+x,go-w").
type Chmod struct {
	Octal    *os.FileMode
	symbolic mode.Set
}

// Apply returns the mode a file of mode m gets.
func (c Chmod) Apply(m os.FileMode) os.FileMode {
	if c.Octal != nil {
		return *c.Octal
	}
	return c.symbolic.Apply(m)
}

// ParseChmod parses a --chmod value ("" gives nil: modes are kept).
func ParseChmod(s string) (*Chmod, error) {
	if s == "" {
		return nil, nil
	}
	nonOctal := fmt.Errorf("--chmod=%s: invalid mode: it should be octal (0 to 07777) or symbolic (e.g. u+x,go-w)", s)
	if p, err := strconv.ParseUint(s, 8, 32); err == nil {
		if p > 0o7777 {
			return nil, nonOctal
		}
		m := os.FileMode(p)
		m = m&os.ModePerm | unixSpecialBits(p)
		return &Chmod{Octal: &m}, nil
	}
	set, err := mode.Parse(s)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) {
			return nil, nonOctal
		}
		return nil, fmt.Errorf("--chmod=%s: %w", s, err)
	}
	return &Chmod{symbolic: set}, nil
}

// unixSpecialBits converts setuid/setgid/sticky bits of a numeric mode to
// os.FileMode's.
func unixSpecialBits(p uint64) os.FileMode {
	var m os.FileMode
	if p&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if p&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if p&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}

// checkChown validates a --chown value's shape: user, user:group, uid or
// uid:gid (names are looked up in the image when the step runs).
func checkChown(s string, link bool) error {
	if s == "" {
		return nil
	}
	user, group, hasGroup := strings.Cut(s, ":")
	if user == "" || (hasGroup && group == "") || strings.Contains(group, ":") {
		return fmt.Errorf("--chown=%s: expected user, user:group, uid or uid:gid", s)
	}
	if link {
		_, uerr := strconv.ParseUint(user, 10, 32)
		_, gerr := strconv.ParseUint(group, 10, 32)
		if uerr != nil || (hasGroup && gerr != nil) {
			return fmt.Errorf("--chown=%s: user and group names can't be resolved when used with --link, use numeric uid[:gid] instead", s)
		}
	}
	return nil
}

// CheckCopy validates the flags of an expanded COPY/ADD (those with
// variables could not be checked at parse time).
func CheckCopy(c *Copy) error { return checkCopyFlags(c) }

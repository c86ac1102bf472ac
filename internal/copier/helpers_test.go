package copier

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/testenv"
)

// node describes one entry of a test tree. Its spec string is
// "path kind [mode] [content|target]": kind f (file), d (dir), l (symlink
// to target), h (hardlink to target), p (fifo), s (socket); mode is octal.
type node struct {
	path, kind string
	mode       uint32
	modeSet    bool
	data       string
}

func parseNode(t testing.TB, spec string) node {
	t.Helper()
	f := strings.SplitN(spec, " ", 4)
	if len(f) < 2 {
		t.Fatalf("bad node %q", spec)
	}
	n := node{path: f[0], kind: f[1]}
	rest := f[2:]
	if len(rest) > 0 {
		var m uint32
		if _, err := fmt.Sscanf(rest[0], "%o", &m); err == nil && strings.HasPrefix(rest[0], "0") {
			n.mode, n.modeSet = m, true
			rest = rest[1:]
		}
	}
	n.data = strings.Join(rest, " ")
	return n
}

// mkTree creates the nodes under dir. Files default to 0644, dirs to 0755.
func mkTree(t testing.TB, dir string, specs ...string) {
	t.Helper()
	old := unix.Umask(0)
	defer unix.Umask(old)
	var dirs []node
	for _, s := range specs {
		n := parseNode(t, s)
		p := filepath.Join(dir, n.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch n.kind {
		case "f":
			err = os.WriteFile(p, []byte(n.data), fs.FileMode(n.or(0o644)))
			if err == nil {
				err = os.Chmod(p, modeOf(n.or(0o644)))
			}
		case "d":
			err = os.MkdirAll(p, 0o755)
			dirs = append(dirs, n)
		case "l":
			err = os.Symlink(n.data, p)
		case "h":
			err = os.Link(filepath.Join(dir, n.data), p)
		case "p":
			err = unix.Mkfifo(p, n.or(0o644))
		case "s":
			var l net.Listener
			l, err = net.Listen("unix", p)
			if err == nil {
				l.(*net.UnixListener).SetUnlinkOnClose(false)
				l.Close()
				err = os.Chmod(p, modeOf(n.or(0o755)))
			}
		default:
			t.Fatalf("bad node kind in %q", s)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(filepath.Join(dir, dirs[i].path), modeOf(dirs[i].or(0o755))); err != nil {
			t.Fatal(err)
		}
	}
}

// makeRemovable gives the owner rwx on every directory below dir, so that
// an unprivileged test can remove trees holding read-only directories.
func makeRemovable(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			if info, err := d.Info(); err == nil {
				os.Chmod(p, info.Mode().Perm()|0o700)
			}
		}
		return nil
	})
}

func (n node) or(def uint32) uint32 {
	if !n.modeSet {
		return def
	}
	return n.mode
}

// listTree describes every entry below dir, one line each, sorted:
// "path kind mode uid:gid [content|->target]". Contents over 64 bytes are
// shown as their sha256. The root itself is left out.
func listTree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, describe(t, p, rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func describe(t testing.TB, p, rel string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	kind := map[uint32]string{unix.S_IFREG: "f", unix.S_IFDIR: "d", unix.S_IFLNK: "l", unix.S_IFIFO: "p",
		unix.S_IFCHR: "c", unix.S_IFBLK: "b", unix.S_IFSOCK: "s"}[st.Mode&unix.S_IFMT]
	if kind == "l" {
		target, err := os.Readlink(p)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%s l %d:%d ->%s", rel, st.Uid, st.Gid, target)
	}
	line := fmt.Sprintf("%s %s %04o %d:%d", rel, kind, st.Mode&0o7777, st.Uid, st.Gid)
	switch kind {
	case "f":
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 64 {
			line += fmt.Sprintf(" sha256:%x", sha256.Sum256(data))
		} else if len(data) > 0 {
			line += " " + string(data)
		}
	}
	return line
}

// owner is the uid:gid entries get in tests that run as root (0:0) and as
// an unprivileged user (who can only give files to itself).
func testOwner() (*Owner, string) {
	if os.Geteuid() == 0 {
		return nil, "0:0"
	}
	return &Owner{UID: os.Geteuid(), GID: os.Getegid()}, fmt.Sprintf("%d:%d", os.Geteuid(), os.Getegid())
}

// expand replaces O in expected lines with the test owner.
func expandOwner(lines []string, owner string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = strings.Replace(l, " O", " "+owner, 1)
	}
	sort.Strings(out)
	return out
}

func needRoot(t testing.TB) {
	t.Helper()
	testenv.Need(t, os.Geteuid() == 0, "root (the test chowns to other users)")
}

func diffLines(got, want []string) string {
	if strings.Join(got, "\n") == strings.Join(want, "\n") {
		return ""
	}
	return fmt.Sprintf("got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
}

func mtime(t testing.TB, p string) time.Time {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return time.Unix(st.Mtim.Unix())
}

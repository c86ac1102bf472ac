package buildcontext

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

type entry struct {
	hdr  tar.Header
	body string
}

func reg(name, body string) entry {
	return entry{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body}
}
func dirEntry(name string, mode int64) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
}
func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target}}
}
func hardlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}

func tarball(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sandbox is a directory holding the tmp dir given to OpenTar, so a write
// that escaped the context would be seen beside it.
func sandbox(t *testing.T) (root, tmp string) {
	root = t.TempDir()
	tmp = filepath.Join(root, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	return root, tmp
}

// listTree returns the paths under dir, relative, "/" for directories.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		if d.IsDir() {
			rel += "/"
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOpenTarCompressions(t *testing.T) {
	plain := tarball(t, reg("Dockerfile", "FROM scratch\nCOPY foo /\n"), reg("foo", "bzip2 contents\n"))
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	xzc := func(b []byte) []byte {
		var buf bytes.Buffer
		w, _ := xz.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	zst := func(b []byte) []byte {
		w, _ := zstd.NewWriter(nil)
		return w.EncodeAll(b, nil)
	}
	bz, err := os.ReadFile("testdata/context.tar.bz2") // made with GNU tar and bzip2: Go has no bzip2 writer
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"tar": plain, "gzip": gz(plain), "xz": xzc(plain), "zstd": zst(plain), "bzip2": bz} {
		t.Run(name, func(t *testing.T) {
			_, tmp := sandbox(t)
			c, err := OpenTar(context.Background(), bytes.NewReader(data), tmp, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := os.ReadFile(filepath.Join(c.Dir, "foo"))
			if err != nil || string(got) != "bzip2 contents\n" {
				t.Errorf("foo = %q, %v", got, err)
			}
			if df := c.Dockerfile(); df.Name != "Dockerfile" || string(df.Data) != "FROM scratch\nCOPY foo /\n" {
				t.Errorf("Dockerfile() = %q %q", df.Name, df.Data)
			}
		})
	}
}

// TestOpenTarMetadata: modes (with setuid), mtimes, symlinks and hardlinks
// are kept; owners are not; directories' modes apply even when read-only;
// implied parents are 0755 whatever the umask; the root stays 0755.
func TestOpenTarMetadata(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	mtime := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	file := reg("bin/tool", "#!/bin/sh\n")
	file.hdr.Mode, file.hdr.Uid, file.hdr.Gid, file.hdr.ModTime = 0o4755, 4321, 4321, mtime
	ro := dirEntry("ro/", 0o555)
	ro.hdr.ModTime = mtime
	_, tmp := sandbox(t)
	data := tarball(t, dirEntry("./", 0o700), reg("Dockerfile", "FROM scratch\n"), file, ro, reg("ro/inside", "x"),
		reg("implied/a/b", "deep"), symlink("link", "bin/tool"), symlink("abs", "/bin/tool"), hardlink("hard", "bin/tool"))
	c, err := OpenTar(context.Background(), bytes.NewReader(data), tmp, Options{})
	if err != nil {
		t.Fatal(err)
	}
	modeOf := func(rel string) os.FileMode {
		st, err := os.Lstat(filepath.Join(c.Dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode()
	}
	for rel, want := range map[string]os.FileMode{
		".": fs.ModeDir | 0o755, "bin/tool": os.ModeSetuid | 0o755, "ro": fs.ModeDir | 0o555,
		"implied": fs.ModeDir | 0o755, "implied/a": fs.ModeDir | 0o755,
	} {
		if got := modeOf(rel); got != want {
			t.Errorf("%s mode = %v, want %v", rel, got, want)
		}
	}
	for _, rel := range []string{"bin/tool", "ro"} {
		st, _ := os.Stat(filepath.Join(c.Dir, rel))
		if !st.ModTime().Equal(mtime) {
			t.Errorf("%s mtime = %v, want %v", rel, st.ModTime(), mtime)
		}
		if uid := st.Sys().(*syscall.Stat_t).Uid; int(uid) != os.Getuid() {
			t.Errorf("%s owned by %d, want the current user %d", rel, uid, os.Getuid())
		}
	}
	for link, want := range map[string]string{"link": "bin/tool", "abs": "/bin/tool"} {
		if got, err := os.Readlink(filepath.Join(c.Dir, link)); err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", link, got, err, want)
		}
	}
	a, _ := os.Stat(filepath.Join(c.Dir, "bin/tool"))
	b, _ := os.Stat(filepath.Join(c.Dir, "hard"))
	if !os.SameFile(a, b) {
		t.Error("hard is not a hardlink of bin/tool")
	}
	if c.Ignore() != nil {
		t.Error("an archive context has no ignore rules")
	}
	// The read-only directory does not stop Close (as an unprivileged user).
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if left := listTree(t, tmp); len(left) != 0 {
		t.Errorf("Close left %v", left)
	}
}

// TestOpenTarConfined: hostile names, symlinks and hardlinks either are
// refused (naming the entry) or land inside the context; nothing is ever
// written beside it, and a refused archive leaves nothing behind.
func TestOpenTarConfined(t *testing.T) {
	var rnd [8]byte
	rand.Read(rnd[:])
	unique := "stepexec-escape-" + hex.EncodeToString(rnd[:])
	df := reg("Dockerfile", "FROM scratch\n")
	cases := []struct {
		name    string
		entries []entry
		wantErr string   // "" = succeeds
		inside  []string // files that must then exist in the context
	}{
		{"dotdot", []entry{df, reg("../x", "x")}, `entry "../x": path "../x" climbs out`, nil},
		{"dotdot inside", []entry{df, reg("a/../../x", "x")}, "climbs out", nil},
		{"absolute dotdot", []entry{df, reg("/../x", "x")}, "climbs out", nil},
		{"absolute name is confined", []entry{df, reg("/etc/"+unique, "x")}, "", []string{"etc/" + unique}},
		{"relative symlink out", []entry{df, symlink("l", "../../x")}, `entry "l": symlink to "../../x" points outside`, nil},
		{"nested symlink out", []entry{df, symlink("a/b/l", "../../../x")}, "points outside", nil},
		{"symlink to the root resolves inside", []entry{df, symlink("l", "/"), reg("l/"+unique, "x")}, "", []string{unique}},
		{"symlink to a sibling", []entry{df, dirEntry("sub/", 0o755), symlink("l", "sub"), reg("l/f", "x")}, "", []string{"sub/f"}},
		{"absolute symlink to the sandbox dangles inside", []entry{df, symlink("l", "SANDBOX"), reg("l/escaped", "x")}, "not a directory inside the build context", nil},
		{"symlink replaced, not written through", []entry{df, symlink("f", "SANDBOX/target"), reg("f", "new")}, "", []string{"f"}},
		{"symlinked dir replaced by a dir", []entry{df, symlink("d", "SANDBOX"), dirEntry("d/", 0o755), reg("d/escaped", "x")}, "", []string{"d/escaped"}},
		{"hardlink out", []entry{df, hardlink("h", "../target")}, `entry "h": hardlink target: path "../target" climbs out`, nil},
		{"hardlink absolute resolves inside", []entry{df, hardlink("h", "SANDBOX/target")}, "hardlink", nil},
		{"hardlink through a symlink", []entry{df, symlink("l", "SANDBOX"), hardlink("h", "l/target")}, "hardlink", nil},
		{"hardlink to a symlink links the symlink", []entry{df, symlink("s", "SANDBOX/target"), hardlink("h", "s")}, "", []string{"h"}},
		{"character device", []entry{df, {hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}}}, `entry "null": device nodes and FIFOs`, nil},
		{"block device", []entry{df, {hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "sda", Devmajor: 8}}}, "device nodes and FIFOs", nil},
		{"FIFO", []entry{df, {hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "Dockerfile.pipe"}}}, "device nodes and FIFOs", nil},
		{"file as the root", []entry{df, reg(".", "x")}, "only a directory may name", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root, tmp := sandbox(t)
			target := filepath.Join(root, "target")
			if err := os.WriteFile(target, []byte("orig"), 0o644); err != nil {
				t.Fatal(err)
			}
			var entries []entry
			for _, e := range tc.entries {
				e.hdr.Linkname = strings.ReplaceAll(e.hdr.Linkname, "SANDBOX", root)
				entries = append(entries, e)
			}
			defer os.Remove("/" + unique)
			c, err := OpenTar(context.Background(), bytes.NewReader(tarball(t, entries...)), tmp, Options{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if left := listTree(t, tmp); len(left) != 0 {
					t.Errorf("a refused archive left %v", left)
				}
			} else if err != nil {
				t.Fatal(err)
			} else {
				for _, rel := range tc.inside {
					if _, err := os.Lstat(filepath.Join(c.Dir, rel)); err != nil {
						t.Errorf("%s not in the context: %v", rel, err)
					}
				}
				c.Close()
			}
			if got := listTree(t, root); strings.Join(got, " ") != "target tmp/" {
				t.Errorf("beside the context: %v, want only target and tmp/", got)
			}
			if b, _ := os.ReadFile(target); string(b) != "orig" {
				t.Errorf("the file outside was changed to %q", b)
			}
			if _, err := os.Lstat("/" + unique); err == nil {
				t.Errorf("/%s was written outside the context", unique)
			}
		})
	}
}

func TestOpenTarDockerfile(t *testing.T) {
	archive := func(t *testing.T) []byte {
		return tarball(t, reg("Dockerfile", "FROM a\n"), reg("sub/app.df", "FROM b\n"), reg("low/dockerfile", "FROM c\n"), reg(".dockerignore", "*\n"))
	}
	cases := []struct {
		name       string
		stdin      func(t *testing.T) []byte
		dockerfile string
		wantName   string
		wantData   string
		wantErr    string
		emptyCtx   bool
	}{
		{"default in the archive", archive, "", "Dockerfile", "FROM a\n", "", false},
		{"-f inside the archive", archive, "sub/app.df", "sub/app.df", "FROM b\n", "", false},
		{"-f with a leading slash", archive, "/sub/app.df", "sub/app.df", "FROM b\n", "", false},
		{"lowercase fallback", archive, "low/Dockerfile", "low/dockerfile", "FROM c\n", "", false},
		{"-f missing in the archive", archive, "nope", "", "", "the archive has no nope", false},
		{"-f -", archive, "-", "", "", "stdin cannot be both", false},
		{"stdin is a Dockerfile", func(*testing.T) []byte { return []byte("FROM scratch\nRUN true\n") }, "", "<stdin>", "FROM scratch\nRUN true\n", "", true},
		{"stdin Dockerfile and -f", func(*testing.T) []byte { return []byte("FROM scratch\n") }, "x", "", "", "ambiguous Dockerfile source", false},
		{"empty stdin", func(*testing.T) []byte { return nil }, "", "", "", "stdin is empty", false},
		{"truncated archive", func(t *testing.T) []byte { return archive(t)[:515] }, "", "", "", "entry \"Dockerfile\": write: unexpected EOF", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, tmp := sandbox(t)
			c, err := OpenTar(context.Background(), bytes.NewReader(tc.stdin(t)), tmp, Options{DockerfilePath: tc.dockerfile})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if left := listTree(t, tmp); len(left) != 0 {
					t.Errorf("left %v", left)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if df := c.Dockerfile(); df.Name != tc.wantName || string(df.Data) != tc.wantData {
				t.Errorf("Dockerfile() = %q %q, want %q %q", df.Name, df.Data, tc.wantName, tc.wantData)
			}
			if left := listTree(t, c.Dir); tc.emptyCtx && len(left) != 0 {
				t.Errorf("the context of a stdin Dockerfile holds %v, want nothing", left)
			}
		})
	}
}

func TestOpenTarCancel(t *testing.T) {
	_, tmp := sandbox(t)
	ctx, cancel := context.WithCancel(context.Background())
	data := tarball(t, reg("Dockerfile", "FROM scratch\n"), reg("big", strings.Repeat("x", 1<<20)))
	pr, pw := io.Pipe()
	go func() {
		pw.Write(data[:4096]) // the Dockerfile and the start of big
		cancel()
		pw.Write(data[4096:])
		pw.Close()
	}()
	_, err := OpenTar(ctx, pr, tmp, Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if left := listTree(t, tmp); len(left) != 0 {
		t.Errorf("a cancelled unpack left %v", left)
	}
}

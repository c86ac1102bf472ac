package buildcontext

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// writeFiles creates files (name → content) under dir; a name ending in
// "/" is a directory.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// ignored reports whether the context's rules exclude rel, the way a
// walker of the context asks (a path is excluded when it or a parent is).
func ignored(t *testing.T, c *Context, rel string) bool {
	t.Helper()
	pm := c.Ignore()
	if pm == nil {
		return false
	}
	m, err := pm.MatchesOrParentMatches(rel)
	if err != nil {
		t.Fatalf("match %s: %v", rel, err)
	}
	return m
}

// TestIgnoreRules checks docker's .dockerignore syntax through Ignore:
// each case is an ignore file and the paths it must and must not exclude.
func TestIgnoreRules(t *testing.T) {
	cases := []struct {
		name     string
		ignore   string
		excluded []string
		kept     []string
	}{
		{"exact name at the root only", "foo\n", []string{"foo", "foo/bar"}, []string{"a/foo", "foobar"}},
		{"leading slash is the root", "/foo\n", []string{"foo", "foo/x"}, []string{"a/foo"}},
		{"trailing slash and ./ are cleaned", "./dir/\n", []string{"dir", "dir/x/y"}, []string{"dir2"}},
		{"comments and blank lines", "# foo\n\n   \nbar\n", []string{"bar"}, []string{"foo", "# foo"}},
		{"a # not at the line start is a name", "a#b\n", []string{"a#b"}, []string{"a"}},
		{"whitespace is trimmed", "  spaced  \n", []string{"spaced"}, []string{"  spaced  "}},
		{"single-level wildcard", "*/temp*\n", []string{"a/temp", "a/temporary.txt"}, []string{"temp", "a/b/temp"}},
		{"two levels", "*/*/temp*\n", []string{"a/b/temp.txt"}, []string{"a/temp.txt"}},
		{"question mark", "temp?\n", []string{"tempa"}, []string{"temp", "tempab"}},
		{"double star any depth", "**/*.go\n", []string{"main.go", "a/b/c.go"}, []string{"a/b/c.gox"}},
		{"double star inside", "a/**/z\n", []string{"a/z", "a/b/c/z"}, []string{"b/z"}},
		{"exception", "*.md\n!README.md\n", []string{"CHANGES.md"}, []string{"README.md"}},
		{"later pattern wins", "*.md\n!README*.md\nREADME-secret.md\n", []string{"a.md", "README-secret.md"}, []string{"README-x.md"}},
		{"exception inside an excluded dir", "docs\n!docs/keep.txt\n", []string{"docs/other.txt"}, []string{"docs/keep.txt"}},
		{"character class", "[ab].txt\n", []string{"a.txt", "b.txt"}, []string{"c.txt"}},
		{"UTF-8 BOM stripped", "\xef\xbb\xbfbom\n", []string{"bom"}, nil},
		{"CRLF line ends", "crlf\r\nother\r\n", []string{"crlf", "other"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\n", ".dockerignore": tc.ignore})
			c, err := OpenDir(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.excluded {
				if !ignored(t, c, p) {
					t.Errorf("%q should be excluded by %q", p, tc.ignore)
				}
			}
			for _, p := range tc.kept {
				if ignored(t, c, p) {
					t.Errorf("%q should be kept with %q", p, tc.ignore)
				}
			}
		})
	}
}

func TestIgnoreFileWithoutPatternsIsNil(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\n", ".dockerignore": "# only a comment\n\n"})
	c, err := OpenDir(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Ignore() != nil {
		t.Errorf("Ignore() = %v, want nil for a file without patterns", c.Ignore().Patterns())
	}
}

func TestInvalidIgnoreFileNamesIt(t *testing.T) {
	for _, content := range []string{"!\n", "a[\n"} {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\n", ".dockerignore": content})
		_, err := OpenDir(dir, Options{})
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, ".dockerignore")) {
			t.Errorf("%q: err = %v, want an error naming the .dockerignore", content, err)
		}
	}
}

// TestIgnoreFilePrecedence checks BuildKit's choice of ignore file
// (frontend/dockerui/config.go): <Dockerfile>.dockerignore beside the
// Dockerfile wins over the context's .dockerignore.
func TestIgnoreFilePrecedence(t *testing.T) {
	cases := []struct {
		name       string
		files      map[string]string // under root: ctx/ is the context
		dockerfile string            // -f, relative to root; "" = none
		stdin      string
		wantFile   string // relative to root; "" = no rules
		excluded   string // a path the chosen rules exclude
	}{
		{"context .dockerignore", map[string]string{"ctx/Dockerfile": "x", "ctx/.dockerignore": "a"}, "", "", "ctx/.dockerignore", "a"},
		{"Dockerfile.dockerignore wins", map[string]string{"ctx/Dockerfile": "x", "ctx/.dockerignore": "a", "ctx/Dockerfile.dockerignore": "b"}, "", "", "ctx/Dockerfile.dockerignore", "b"},
		{"an empty Dockerfile.dockerignore still wins", map[string]string{"ctx/Dockerfile": "x", "ctx/.dockerignore": "a", "ctx/Dockerfile.dockerignore": ""}, "", "", "ctx/Dockerfile.dockerignore", ""},
		{"lowercase dockerfile still uses Dockerfile.dockerignore", map[string]string{"ctx/dockerfile": "x", "ctx/.dockerignore": "a", "ctx/Dockerfile.dockerignore": "b"}, "", "", "ctx/Dockerfile.dockerignore", "b"},
		{"-f name.Dockerfile uses name.Dockerfile.dockerignore", map[string]string{"ctx/app.Dockerfile": "x", "ctx/.dockerignore": "a", "ctx/app.Dockerfile.dockerignore": "c"}, "ctx/app.Dockerfile", "", "ctx/app.Dockerfile.dockerignore", "c"},
		{"-f without its own ignore file falls back to the context's", map[string]string{"ctx/app.Dockerfile": "x", "ctx/.dockerignore": "a", "ctx/Dockerfile.dockerignore": "b"}, "ctx/app.Dockerfile", "", "ctx/.dockerignore", "a"},
		{"-f outside the context, ignore file beside it", map[string]string{"ctx/.dockerignore": "a", "ext/Dockerfile": "x", "ext/Dockerfile.dockerignore": "d"}, "ext/Dockerfile", "", "ext/Dockerfile.dockerignore", "d"},
		{"-f outside the context, context's .dockerignore", map[string]string{"ctx/.dockerignore": "a", "ext/Dockerfile": "x", "ctx/Dockerfile.dockerignore": "b"}, "ext/Dockerfile", "", "ctx/.dockerignore", "a"},
		{"-f - uses the context's .dockerignore", map[string]string{"ctx/.dockerignore": "a", "ctx/Dockerfile.dockerignore": "b"}, "-", "FROM scratch\n", "ctx/.dockerignore", "a"},
		{"no ignore file", map[string]string{"ctx/Dockerfile": "x"}, "", "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeFiles(t, root, tc.files)
			opts := Options{Stdin: strings.NewReader(tc.stdin)}
			switch tc.dockerfile {
			case "", "-":
				opts.DockerfilePath = tc.dockerfile
			default:
				opts.DockerfilePath = filepath.Join(root, tc.dockerfile)
			}
			c, err := OpenDir(filepath.Join(root, "ctx"), opts)
			if err != nil {
				t.Fatal(err)
			}
			want := ""
			if tc.wantFile != "" {
				want = filepath.Join(root, tc.wantFile)
			}
			if c.IgnoreFile() != want {
				t.Errorf("IgnoreFile() = %q, want %q", c.IgnoreFile(), want)
			}
			for _, p := range []string{"a", "b", "c", "d"} {
				if got := ignored(t, c, p); got != (p == tc.excluded) {
					t.Errorf("%q excluded = %v, want %v", p, got, p == tc.excluded)
				}
			}
		})
	}
}

// TestDockerfileLocation checks where the Dockerfile is read from.
func TestDockerfileLocation(t *testing.T) {
	cases := []struct {
		name       string
		files      map[string]string // under root; ctx/ is the context
		dockerfile string            // -f relative to root, "-" or ""
		stdin      string
		wantName   string // relative to root, or "<stdin>"
		wantData   string
		wantErr    string
	}{
		{"default", map[string]string{"ctx/Dockerfile": "upper"}, "", "", "ctx/Dockerfile", "upper", ""},
		{"Dockerfile before dockerfile", map[string]string{"ctx/Dockerfile": "upper", "ctx/dockerfile": "lower"}, "", "", "ctx/Dockerfile", "upper", ""},
		{"lowercase fallback", map[string]string{"ctx/dockerfile": "lower"}, "", "", "ctx/dockerfile", "lower", ""},
		{"no Dockerfile", map[string]string{"ctx/other": ""}, "", "", "", "", "has no Dockerfile"},
		{"-f inside the context", map[string]string{"ctx/sub/build.df": "sub"}, "ctx/sub/build.df", "", "ctx/sub/build.df", "sub", ""},
		{"-f outside the context", map[string]string{"ctx/x": "", "elsewhere/Dockerfile": "ext"}, "elsewhere/Dockerfile", "", "elsewhere/Dockerfile", "ext", ""},
		{"-f dir/Dockerfile falls back to dir/dockerfile", map[string]string{"ctx/x": "", "e/dockerfile": "elower"}, "e/Dockerfile", "", "e/dockerfile", "elower", ""},
		{"-f other names have no fallback", map[string]string{"ctx/x": "", "e/app.dockerfile": "x"}, "e/app.Dockerfile", "", "", "", "no such file"},
		{"-f missing", map[string]string{"ctx/x": ""}, "nope", "", "", "", "-f "},
		{"-f -", map[string]string{"ctx/Dockerfile": "ignored"}, "-", "FROM stdin\n", "<stdin>", "FROM stdin\n", ""},
		{"-f a directory", map[string]string{"ctx/x": "", "d/": ""}, "d", "", "", "", "is a directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeFiles(t, root, tc.files)
			opts := Options{DockerfilePath: tc.dockerfile, Stdin: strings.NewReader(tc.stdin)}
			if tc.dockerfile != "" && tc.dockerfile != "-" {
				opts.DockerfilePath = filepath.Join(root, tc.dockerfile)
			}
			c, err := OpenDir(filepath.Join(root, "ctx"), opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tc.wantName
			if want != stdinName {
				want = filepath.Join(root, want)
			}
			df := c.Dockerfile()
			if df.Name != want || string(df.Data) != tc.wantData {
				t.Errorf("Dockerfile() = %q %q, want %q %q", df.Name, df.Data, want, tc.wantData)
			}
		})
	}
}

// TestIgnoredDockerfileStaysReadable: excluding the Dockerfile and the
// ignore file from the context does not stop the builder reading them.
func TestIgnoredDockerfileStaysReadable(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\n", ".dockerignore": "Dockerfile\n.dockerignore\n"})
	c, err := OpenDir(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Dockerfile().Data) != "FROM scratch\n" {
		t.Errorf("Dockerfile = %q", c.Dockerfile().Data)
	}
	if !ignored(t, c, "Dockerfile") || !ignored(t, c, ".dockerignore") {
		t.Error("the Dockerfile and .dockerignore should be excluded from the context")
	}
}

func TestOpenDirRefusesNonDirectory(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file")
	writeFiles(t, root, map[string]string{"file": "x"})
	for _, tc := range []struct{ path, want string }{
		{file, file + " is not a directory"},
		{filepath.Join(root, "missing"), filepath.Join(root, "missing") + ": no such directory"},
	} {
		_, err := OpenDir(tc.path, Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenDir(%s) err = %v, want %q", tc.path, err, tc.want)
		}
	}
}

// TestSpecialFilesRefused: a FIFO or device where the Dockerfile or an
// ignore file should be is refused at once, naming it — never a hang.
func TestSpecialFilesRefused(t *testing.T) {
	cases := []struct {
		name       string
		fifo       string // created as a FIFO under the context
		dockerfile string // -f; "" = default
		want       string // in the error
	}{
		{"FIFO Dockerfile", "Dockerfile", "", "Dockerfile is a named pipe (FIFO)"},
		{"FIFO -f", "my.df", "my.df", "my.df is a named pipe (FIFO)"},
		{"FIFO .dockerignore", ".dockerignore", "", ".dockerignore is a named pipe (FIFO)"},
		{"FIFO Dockerfile.dockerignore", "Dockerfile.dockerignore", "", "Dockerfile.dockerignore is a named pipe (FIFO)"},
		{"FIFO my.df.dockerignore", "my.df.dockerignore", "my.df", "my.df.dockerignore is a named pipe (FIFO)"},
		{"character device -f", "", "/dev/null", "/dev/null is a character device"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\n", "my.df": "FROM scratch\n"})
			opts := Options{DockerfilePath: tc.dockerfile}
			if tc.fifo != "" {
				p := filepath.Join(dir, tc.fifo)
				os.Remove(p)
				if err := unix.Mkfifo(p, 0o644); err != nil {
					t.Fatal(err)
				}
				if tc.dockerfile != "" {
					opts.DockerfilePath = filepath.Join(dir, tc.dockerfile)
				}
			}
			errc := make(chan error, 1)
			go func() {
				_, err := OpenDir(dir, opts)
				errc <- err
			}()
			select {
			case err := <-errc:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("err = %v, want one containing %q", err, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("OpenDir blocked on a special file")
			}
		})
	}
}

func TestDockerfileTooLarge(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "Dockerfile")
	writeFiles(t, dir, map[string]string{"Dockerfile": ""})
	if err := os.Truncate(p, MaxFileSize+1); err != nil {
		t.Fatal(err)
	}
	_, err := OpenDir(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "larger than the maximum") {
		t.Errorf("err = %v, want a size error", err)
	}
	_, err = OpenDir(dir, Options{DockerfilePath: "-", Stdin: strings.NewReader(strings.Repeat("#", MaxFileSize+1))})
	if err == nil || !strings.Contains(err.Error(), "larger than the maximum") {
		t.Errorf("stdin: err = %v, want a size error", err)
	}
}

// TestContextFilesResolvedInside: a symlinked Dockerfile or .dockerignore
// in the context resolves inside it, as BuildKit reads them; an absolute
// target does not reach the host's file of that name.
func TestContextFilesResolvedInside(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"outside/Dockerfile": "FROM outside\n",
		"ctx/real/df":        "FROM inside\n",
		"ctx/real/ignore":    "secret\n",
	})
	ctx := filepath.Join(root, "ctx")
	// An absolute link: in the context's root it names ctx/<root>/outside/Dockerfile.
	if err := os.Symlink(filepath.Join(root, "outside", "Dockerfile"), filepath.Join(ctx, "Dockerfile")); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDir(ctx, Options{}); err == nil || !strings.Contains(err.Error(), "has no Dockerfile") {
		t.Fatalf("absolute symlink out of the context: err = %v, want no Dockerfile", err)
	}
	os.Remove(filepath.Join(ctx, "Dockerfile"))
	for link, target := range map[string]string{"Dockerfile": "real/df", ".dockerignore": "/real/ignore"} {
		if err := os.Symlink(target, filepath.Join(ctx, link)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := OpenDir(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Dockerfile().Data) != "FROM inside\n" || !ignored(t, c, "secret") {
		t.Errorf("Dockerfile %q, secret ignored %v: want the in-context targets", c.Dockerfile().Data, ignored(t, c, "secret"))
	}
}

// TestIgnoreConcurrentUse: stages copy concurrently, and a PatternMatcher
// compiles lazily; each Ignore call is its own matcher (go test -race).
func TestIgnoreConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\n", ".dockerignore": "/a/**/*.o\n!keep*\n"})
	c, err := OpenDir(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.IgnorePatterns(), " "); got != "a/**/*.o !keep*" {
		t.Errorf("IgnorePatterns() = %q", got)
	}
	done := make(chan bool)
	for range 4 {
		go func() {
			m, err := c.Ignore().MatchesOrParentMatches("a/b/c.o")
			done <- m && err == nil
		}()
	}
	for range 4 {
		if !<-done {
			t.Error("a/b/c.o not excluded")
		}
	}
}

func TestOpenPicksTheKind(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM dir\n"})
	cases := []struct {
		arg, stdin, want, wantErr string
	}{
		{dir, "", "FROM dir\n", ""},
		{"-", "FROM stdin\n", "FROM stdin\n", ""},
		{"https://github.com/o/r.git", "", "", "remote contexts"},
		{"git@github.com:o/r.git", "", "", "remote contexts"},
		{filepath.Join(dir, "missing"), "", "", "no such directory"},
	}
	for _, tc := range cases {
		c, err := Open(context.Background(), tc.arg, t.TempDir(), Options{Stdin: strings.NewReader(tc.stdin)})
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Open(%s) err = %v, want %q", tc.arg, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if string(c.Dockerfile().Data) != tc.want {
			t.Errorf("Open(%s) Dockerfile %q, want %q", tc.arg, c.Dockerfile().Data, tc.want)
		}
		c.Close()
	}
}

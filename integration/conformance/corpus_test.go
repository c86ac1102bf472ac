package conformance

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// The corpus itself: enough cases, each loadable, described, with a golden
// that reads back.
func TestCorpus(t *testing.T) {
	cases, err := Load(filepath.Join("..", "testdata", "conformance"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 60 {
		t.Errorf("the corpus has %d cases, want at least 60", len(cases))
	}
	for _, c := range cases {
		if c.Spec.Covers == "" {
			t.Errorf("%s: case.json does not say what the case covers", c.Name)
		}
		if _, err := c.Expected(); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
		for _, b := range c.Spec.Before {
			if _, err := LoadCase(filepath.Join(filepath.Dir(c.Dir), b.Dir)); err != nil {
				t.Errorf("%s: before %s: %v", c.Name, b.Dir, err)
			}
		}
	}
}

func TestLoadNamedCases(t *testing.T) {
	corpus := filepath.Join("..", "testdata", "conformance")
	cases, err := Load(corpus, "03-env-forms", "testdata/conformance/01-run-forms")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 2 || cases[0].Name != "01-run-forms" || cases[1].Name != "03-env-forms" {
		t.Errorf("loaded %v", cases)
	}
	if _, err := Load(corpus, "no-such-case"); err == nil || !strings.Contains(err.Error(), "no-such-case") {
		t.Errorf("an unknown case gave %v", err)
	}
}

func writeCase(t *testing.T, files map[string]string) *Case {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "07-test")
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := LoadCase(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPrepareNormalizesModesAndRunsSetup(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	c := writeCase(t, map[string]string{
		"Dockerfile": "FROM alpine\n", "sub/file": "f", "run.sh": "#!/bin/sh\n",
		SpecFile: `{"covers": "x"}`, ExpectedFile: "{}", SetupFile: "chmod 0750 sub\nln sub/file sub/link\n",
	})
	if err := os.Chmod(filepath.Join(c.Dir, "run.sh"), 0o700); err != nil {
		t.Fatal(err)
	}
	p, err := c.Prepare(filepath.Join(t.TempDir(), "deep", "copy"))
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]os.FileMode{"Dockerfile": 0o644, "run.sh": 0o755, "sub": 0o750 | os.ModeDir, "sub/file": 0o644}
	for name, want := range modes {
		fi, err := os.Lstat(filepath.Join(p.Root, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
	for _, meta := range []string{SpecFile, ExpectedFile, SetupFile} {
		if _, err := os.Lstat(filepath.Join(p.Root, meta)); err == nil {
			t.Errorf("%s was copied into the context", meta)
		}
	}
	a, _ := os.Stat(filepath.Join(p.Root, "sub/file"))
	b, _ := os.Stat(filepath.Join(p.Root, "sub/link"))
	if !os.SameFile(a, b) {
		t.Errorf("setup.sh did not run in the copy (no hardlink)")
	}
	if p.Context != p.Root || p.Dockerfile != "" || p.DockerfilePath() != filepath.Join(p.Root, "Dockerfile") {
		t.Errorf("context %s, dockerfile %q", p.Context, p.Dockerfile)
	}
}

func TestPrepareFailingSetupSaysSo(t *testing.T) {
	c := writeCase(t, map[string]string{"Dockerfile": "FROM alpine\n", SetupFile: "echo broken >&2; exit 3\n"})
	_, err := c.Prepare(filepath.Join(t.TempDir(), "copy"))
	if err == nil || !strings.Contains(err.Error(), "broken") || !strings.Contains(err.Error(), SetupFile) {
		t.Errorf("error %v, want the setup's output and name", err)
	}
}

func TestLoadCaseRejectsUnknownFields(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM alpine\n"), 0o644)
	os.WriteFile(filepath.Join(dir, SpecFile), []byte(`{"buildargs": ["A=1"]}`), 0o644)
	if _, err := LoadCase(dir); err == nil || !strings.Contains(err.Error(), "buildargs") {
		t.Errorf("a misspelt field gave %v", err)
	}
}

func TestBuildArgs(t *testing.T) {
	c := writeCase(t, map[string]string{
		"Dockerfile": "FROM alpine\n", "args.conf": "# c\n\nF=from file\nB=file\n",
		SpecFile: `{"build_args": ["A=1", "E", "B=cli"], "build_arg_files": ["args.conf"], "env": {"E": "from env"}}`,
	})
	p, err := c.Prepare(filepath.Join(t.TempDir(), "copy"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.BuildArgs(HTTPArg(8080)...)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"F=from file", "B=file", "A=1", "E=from env", "B=cli", "HTTP_PORT=8080"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("build args %q, want %q", got, want)
	}
	p.Spec.Env = nil
	if _, err := p.BuildArgs(); err == nil || !strings.Contains(err.Error(), "E takes its value from env") {
		t.Errorf("a K arg without env gave %v", err)
	}
}

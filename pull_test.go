package stepexec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePullPolicy(t *testing.T) {
	for in, want := range map[string]PullPolicy{
		"missing": PullMissing, "false": PullMissing, "always": PullAlways, "true": PullAlways, "": PullAlways, "never": PullNever,
	} {
		if got, err := ParsePullPolicy(in); err != nil || got != want {
			t.Errorf("ParsePullPolicy(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParsePullPolicy("sometimes"); err == nil || !strings.Contains(err.Error(), "want missing, always or never") {
		t.Errorf("ParsePullPolicy(sometimes) err = %v", err)
	}
}

// TestCheckOutput: each output's destination is checked before a build
// runs, with the path in the message.
func TestCheckOutput(t *testing.T) {
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	os.MkdirAll(filepath.Join(full, "sub"), 0o755)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	cases := []struct {
		out Output
		err string
	}{
		{Output{Type: "local", Dest: filepath.Join(dir, "new")}, ""},
		{Output{Type: "local", Dest: full}, full + " is not empty"},
		{Output{Type: "local", Dest: file}, "is not a directory"},
		{Output{Type: "local", Dest: filepath.Join(dir, "missing", "x")}, filepath.Join(dir, "missing")},
		{Output{Type: "tar", Dest: filepath.Join(dir, "x.tar")}, ""},
		{Output{Type: "docker", Dest: full}, "is not a file"},
		{Output{Type: "registry", Names: []string{"r.example/app"}, Push: true}, ""},
		{Output{Type: "registry", Names: []string{"localhost/app"}, Push: true}, "names no registry"},
		{Output{Type: "image", Names: []string{"app"}}, ""},
		{Output{Type: "registry", Push: true}, "needs name=REF"},
	}
	for _, c := range cases {
		err := checkOutput(c.out)
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("checkOutput(%+v) = %v, want %q", c.out, err, c.err)
		}
	}
}

package image

import (
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	cases := []struct{ in, want, err string }{
		{in: "hello", want: "localhost/hello:latest"},
		{in: "alpine:3.20", want: "localhost/alpine:3.20"},
		{in: "team/app:v1", want: "localhost/team/app:v1"},
		{in: "localhost/app", want: "localhost/app:latest"},
		{in: "quay.io/x/y", want: "quay.io/x/y:latest"},
		{in: "registry:5000/y:2", want: "registry:5000/y:2"},
		{in: "", err: "empty image name"},
		{in: "UPPER", err: "invalid image name"},
		{in: "app@sha256:" + strings.Repeat("a", 64), err: "cannot hold a digest"},
		{in: "bad name", err: "invalid image name"},
	}
	for _, c := range cases {
		got, err := Normalize(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Normalize(%q) = %q, %v; want error containing %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestCandidates(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"alpine", []string{"localhost/alpine:latest", "docker.io/library/alpine:latest"}},
		{"alpine:3.20", []string{"localhost/alpine:3.20", "docker.io/library/alpine:3.20"}},
		{"me/app", []string{"localhost/me/app:latest", "docker.io/me/app:latest"}},
		{"docker.io/library/alpine", []string{"docker.io/library/alpine:latest"}},
		{"localhost/hello:1", []string{"localhost/hello:1"}},
	}
	for _, c := range cases {
		got, err := Candidates(c.in)
		if err != nil || strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("Candidates(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestSplitName(t *testing.T) {
	cases := []struct{ in, repo, tag string }{
		{"localhost/hello:latest", "localhost/hello", "latest"},
		{"registry:5000/a/b:2", "registry:5000/a/b", "2"},
		{"localhost/untagged", "localhost/untagged", "<none>"},
	}
	for _, c := range cases {
		repo, tag := SplitName(c.in)
		if repo != c.repo || tag != c.tag {
			t.Errorf("SplitName(%q) = %q, %q; want %q, %q", c.in, repo, tag, c.repo, c.tag)
		}
	}
}

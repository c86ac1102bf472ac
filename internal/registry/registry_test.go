package registry

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/distribution/registry/api/errcode"
	v2 "github.com/docker/distribution/registry/api/v2"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"
)

// confSystem is a SystemContext reading only registries.conf content
// conf (no drop-ins: Debian's shortnames.conf would add aliases).
func confSystem(t *testing.T, conf string) *types.SystemContext {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "registries.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	return &types.SystemContext{SystemRegistriesConfPath: path, SystemRegistriesConfDirPath: filepath.Join(dir, "d")}
}

func TestPullCandidates(t *testing.T) {
	cases := []struct {
		conf, ref string
		want      []string
		err       string
	}{
		{"", "alpine", []string{"docker.io/library/alpine:latest"}, ""},
		{"", "me/app:1", []string{"docker.io/me/app:1"}, ""},
		{"", "quay.io/x/y", []string{"quay.io/x/y:latest"}, ""},
		{"", "127.0.0.1:5000/app@sha256:" + strings.Repeat("a", 64), []string{"127.0.0.1:5000/app@sha256:" + strings.Repeat("a", 64)}, ""},
		{`unqualified-search-registries = ["a.example", "b.example"]` + "\nshort-name-mode = \"permissive\"", "app:2",
			[]string{"a.example/app:2", "b.example/app:2"}, ""},
		{"[aliases]\n\"app\" = \"c.example/team/app\"\n", "app:3", []string{"c.example/team/app:3"}, ""},
		{"", strings.Repeat("b", 64), nil, "is an image ID"},
		{"", "sha256:" + strings.Repeat("b", 64), nil, "is an image ID"},
	}
	for _, c := range cases {
		got, _, err := pullCandidates(confSystem(t, c.conf), c.ref)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("pullCandidates(%q) err = %v, want %q", c.ref, err, c.err)
			}
			continue
		}
		var names []string
		for _, n := range got {
			names = append(names, n.String())
		}
		if err != nil || strings.Join(names, " ") != strings.Join(c.want, " ") {
			t.Errorf("pullCandidates(%q) with %q = %v, %v; want %v", c.ref, c.conf, names, err, c.want)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:5000": true, "127.1.2.3": true, "[::1]:5000": true, "localhost:5000": true, "localhost": true,
		"10.0.0.1:5000": false, "registry.example.com": false, "docker.io": false, "[::2]:5000": false,
	} {
		if got := isLoopback(host); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestAllowLoopbackHTTP: plain HTTP is allowed for a loopback registry
// that speaks it, or where nothing listens, never for one that speaks
// TLS, one elsewhere, one with a mirror elsewhere, or against an explicit
// --tls-verify.
func TestAllowLoopbackHTTP(t *testing.T) {
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	secure := httptest.NewTLSServer(http.NotFoundHandler())
	defer secure.Close()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	nothing := l.Addr().String()
	l.Close()
	host := func(s *httptest.Server) string {
		return strings.TrimPrefix(strings.TrimPrefix(s.URL, "http://"), "https://")
	}
	verify := true
	cases := []struct {
		name, ref, conf string
		tlsVerify       *bool
		want            types.OptionalBool
	}{
		{"plain HTTP on loopback", host(plain) + "/x:1", "", nil, types.OptionalBoolTrue},
		{"nothing listens", nothing + "/x:1", "", nil, types.OptionalBoolTrue},
		{"TLS on loopback", host(secure) + "/x:1", "", nil, types.OptionalBoolUndefined},
		{"elsewhere", "registry.example.com/x:1", "", nil, types.OptionalBoolUndefined},
		{"mirror elsewhere", host(plain) + "/x:1",
			"[[registry]]\nlocation = \"" + host(plain) + "\"\n[[registry.mirror]]\nlocation = \"mirror.example.com\"\n", nil, types.OptionalBoolUndefined},
		{"relocated to loopback", "docker.io/library/x:1",
			"[[registry]]\nprefix = \"docker.io\"\nlocation = \"" + host(plain) + "\"\n", nil, types.OptionalBoolTrue},
		{"--tls-verify=true", host(plain) + "/x:1", "", &verify, types.OptionalBoolFalse},
	}
	for _, c := range cases {
		sys := confSystem(t, c.conf)
		if c.tlsVerify != nil {
			sys.DockerInsecureSkipTLSVerify = types.NewOptionalBool(!*c.tlsVerify)
		}
		named, err := reference.ParseNormalizedNamed(c.ref)
		if err != nil {
			t.Fatal(err)
		}
		allowLoopbackHTTP(context.Background(), sys, named, false)
		if sys.DockerInsecureSkipTLSVerify != c.want {
			t.Errorf("%s: DockerInsecureSkipTLSVerify = %v, want %v", c.name, sys.DockerInsecureSkipTLSVerify, c.want)
		}
	}
}

func TestExplain(t *testing.T) {
	cases := []struct {
		name string
		err  error
		kind error
		says []string
	}{
		{"manifest unknown", errcode.Error{Code: v2.ErrorCodeManifestUnknown}, ErrNotFound, []string{"r.example/x:1: not found"}},
		{"name unknown", fmt.Errorf("reading: %w", errcode.Error{Code: v2.ErrorCodeNameUnknown}), ErrNotFound, nil},
		{"bad credentials", docker.ErrUnauthorizedForCredentials{Err: errors.New("no")}, ErrUnauthorized, []string{"stepexec login r.example"}},
		{"auth required", errcode.Error{Code: errcode.ErrorCodeUnauthorized}, ErrUnauthorized, []string{"stepexec login r.example"}},
		{"denied", errcode.Error{Code: errcode.ErrorCodeDenied}, ErrUnauthorized, []string{"does not exist, or it needs `stepexec login r.example`"}},
		{"unknown CA", fmt.Errorf("ping: %w", x509.UnknownAuthorityError{}), ErrTLS, []string{"certs.d/r.example/ca.crt", "insecure = true", "--tls-verify=false"}},
		{"HTTP to HTTPS", errors.New("http: server gave HTTP response to HTTPS client"), ErrTLS, nil},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, ErrUnreachable, []string{"cannot connect to r.example"}},
		{"silent", errors.Join(errSilent, context.Canceled), ErrUnreachable, []string{"did not answer within 1m0s"}},
	}
	for _, c := range cases {
		got := explain(c.err, "r.example/x:1", time.Minute)
		if !errors.Is(got, c.kind) {
			t.Errorf("%s: %v is not %v", c.name, got, c.kind)
		}
		for _, s := range c.says {
			if !strings.Contains(got.Error(), s) {
				t.Errorf("%s: %q does not say %q", c.name, got, s)
			}
		}
	}
}

func TestParseDestination(t *testing.T) {
	cases := []struct{ in, want, err string }{
		{"127.0.0.1:5000/app", "127.0.0.1:5000/app:latest", ""},
		{"docker://r.example/a/b:2", "r.example/a/b:2", ""},
		{"me/app", "docker.io/me/app:latest", ""},
		{"localhost/app:latest", "", "names no registry"},
		{"r.example/a@sha256:" + strings.Repeat("c", 64), "", "names a tag, not a digest"},
		{"Bad Name", "", "invalid destination"},
	}
	for _, c := range cases {
		got, err := ParseDestination(c.in)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ParseDestination(%q) err = %v, want %q", c.in, err, c.err)
		case c.err == "" && (err != nil || got.String() != c.want):
			t.Errorf("ParseDestination(%q) = %v, %v; want %s", c.in, got, err, c.want)
		}
	}
}

package registry

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"go.podman.io/image/v5/docker/reference"
)

func TestAuthFile(t *testing.T) {
	cases := []struct {
		name, flag, env, xdg, want string
	}{
		{"--authfile", "/f/flag.json", "/f/env.json", "/xdg", "/f/flag.json"},
		{"$REGISTRY_AUTH_FILE", "", "/f/env.json", "/xdg", "/f/env.json"},
		{"$XDG_RUNTIME_DIR", "", "", "/xdg", "/xdg/containers/auth.json"},
	}
	for _, c := range cases {
		t.Setenv("REGISTRY_AUTH_FILE", c.env)
		t.Setenv("XDG_RUNTIME_DIR", c.xdg)
		if got := New(Options{AuthFile: c.flag}).AuthFile(); got != c.want {
			t.Errorf("%s: AuthFile() = %s, want %s", c.name, got, c.want)
		}
	}
}

func TestLoginKey(t *testing.T) {
	for in, want := range map[string][2]string{
		"r.example:5000":              {"r.example:5000", "r.example:5000"},
		"https://r.example/":          {"r.example", "r.example"},
		"r.example/team":              {"r.example/team", "r.example"},
		"index.docker.io":             {"docker.io", "docker.io"},
		"https://index.docker.io/v1/": {"docker.io", "docker.io"},
	} {
		key, host, err := loginKey(in)
		if err != nil || key != want[0] || host != want[1] {
			t.Errorf("loginKey(%q) = %q, %q, %v; want %q, %q", in, key, host, err, want[0], want[1])
		}
	}
	if _, _, err := loginKey(""); err == nil {
		t.Errorf("loginKey(\"\") gave no error")
	}
}

// TestCredentialsPrecedence: the containers auth file first, then
// ~/.config/containers/auth.json, then docker's config.json: its auths,
// then its credsStore helper; nothing found is anonymous.
func TestCredentialsPrecedence(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("DOCKER_CONFIG", "")
	bin := t.TempDir()
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	authFile := filepath.Join(t.TempDir(), "auth.json")
	write := func(path, content string) {
		os.MkdirAll(filepath.Dir(path), 0o700)
		if err := os.WriteFile(path, []byte(content), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	auth := func(host, user string) string {
		return `{"auths":{"` + host + `":{"auth":"` + base64.StdEncoding.EncodeToString([]byte(user+":pw")) + `"}}}`
	}
	write(authFile, auth("one.example", "from-auth-file"))
	write(filepath.Join(home, ".config", "containers", "auth.json"), auth("two.example", "from-config-home"))
	write(filepath.Join(home, ".docker", "config.json"),
		`{"auths":{"one.example":{"auth":"`+base64.StdEncoding.EncodeToString([]byte("docker-loses:pw"))+`"},`+
			`"three.example":{"auth":"`+base64.StdEncoding.EncodeToString([]byte("from-docker:pw"))+`"}},"credsStore":"fake"}`)
	write(filepath.Join(bin, "docker-credential-fake"),
		"#!/bin/sh\nread server\n[ \"$server\" = four.example ] || { echo 'credentials not found in native keychain'; exit 1; }\n"+
			"echo '{\"ServerURL\":\"four.example\",\"Username\":\"from-creds-store\",\"Secret\":\"pw\"}'\n")
	c := New(Options{AuthFile: authFile})
	for host, want := range map[string]string{
		"one.example": "from-auth-file", "two.example": "from-config-home", "three.example": "from-docker",
		"four.example": "from-creds-store", "five.example": "",
	} {
		named, _ := reference.ParseNormalizedNamed(host + "/x")
		creds, err := c.credentials(named)
		if err != nil || creds.Username != want {
			t.Errorf("credentials for %s: user %q, %v; want %q", host, creds.Username, err, want)
		}
	}
}

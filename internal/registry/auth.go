package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	helperclient "github.com/docker/docker-credential-helpers/client"
	"github.com/docker/docker-credential-helpers/credentials"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/docker/config"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/homedir"
	"go.podman.io/storage/pkg/unshare"
)

// Where credentials come from, first match wins:
//  1. the containers auth file (AuthFile): --authfile, $REGISTRY_AUTH_FILE,
//     else podman's, $XDG_RUNTIME_DIR/containers/auth.json (without
//     XDG_RUNTIME_DIR: /run/user/UID/…, or /run/containers/0/… as root);
//     `stepexec login` writes there;
//  2. ~/.config/containers/auth.json ($XDG_CONFIG_HOME);
//  3. docker's ~/.docker/config.json ($DOCKER_CONFIG): its auths, its
//     per-registry credHelpers, then its credsStore.
// A pull that may go to mirrors reads only file 1 (and registries.conf's
// credential helpers), per endpoint: one registry's secret is never sent
// to another.

// AuthFile is the containers auth file stepexec reads first and login
// writes.
func (c *Client) AuthFile() string {
	if c.opts.AuthFile != "" {
		return c.opts.AuthFile
	}
	if f := os.Getenv("REGISTRY_AUTH_FILE"); f != "" {
		return f
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "containers", "auth.json")
	}
	// The real uid, also inside stepexec's user namespace (where it is 0).
	uid := unshare.GetRootlessUID()
	if uid == 0 {
		return "/run/containers/0/auth.json"
	}
	run := filepath.Join("/run/user", strconv.Itoa(uid))
	if st, err := os.Stat(run); err == nil && st.IsDir() {
		return filepath.Join(run, "containers", "auth.json")
	}
	// Where podman 4 puts its runtime dir then.
	return filepath.Join(os.TempDir(), "podman-run-"+strconv.Itoa(uid), "containers", "auth.json")
}

// credentials finds the credentials for the registry of named (anonymous
// when there are none).
func (c *Client) credentials(named reference.Named) (types.DockerAuthConfig, error) {
	xdgConfig := os.Getenv("XDG_CONFIG_HOME")
	if xdgConfig == "" {
		xdgConfig = filepath.Join(homedir.Get(), ".config")
	}
	for _, f := range []string{c.AuthFile(), filepath.Join(xdgConfig, "containers", "auth.json")} {
		creds, err := config.GetCredentialsForRef(&types.SystemContext{AuthFilePath: f}, named)
		if err != nil {
			return creds, fmt.Errorf("reading credentials from %s: %w", f, err)
		}
		if creds != (types.DockerAuthConfig{}) {
			return creds, nil
		}
	}
	return dockerCredentials(named)
}

// dockerConfigPath is docker's client config file.
func dockerConfigPath() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	return filepath.Join(homedir.Get(), ".docker", "config.json")
}

// dockerCredentials reads docker's config.json: auths and credHelpers
// (containers/image's reader), then its credsStore.
func dockerCredentials(named reference.Named) (types.DockerAuthConfig, error) {
	path := dockerConfigPath()
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return types.DockerAuthConfig{}, nil
	}
	if err != nil {
		return types.DockerAuthConfig{}, fmt.Errorf("reading credentials from %s: %w", path, err)
	}
	creds, err := config.GetCredentialsForRef(&types.SystemContext{DockerCompatAuthFilePath: path}, named)
	if err != nil || creds != (types.DockerAuthConfig{}) {
		return creds, err
	}
	var cfg struct {
		CredsStore string `json:"credsStore"`
	}
	if json.Unmarshal(raw, &cfg) != nil || cfg.CredsStore == "" {
		return creds, nil
	}
	server := reference.Domain(named)
	if server == "docker.io" {
		server = "https://index.docker.io/v1/" // docker's key for Docker Hub
	}
	got, err := helperclient.Get(helperclient.NewShellProgramFunc("docker-credential-"+cfg.CredsStore), server)
	if err != nil {
		if credentials.IsErrCredentialsNotFound(err) || credentials.IsErrCredentialsNotFoundMessage(err.Error()) {
			return creds, nil
		}
		return creds, fmt.Errorf("credsStore %s of %s: %w", cfg.CredsStore, path, err)
	}
	if got.Username == "<token>" {
		return types.DockerAuthConfig{IdentityToken: got.Secret}, nil
	}
	return types.DockerAuthConfig{Username: got.Username, Password: got.Secret}, nil
}

// setCredentials gives sys the credentials for a transfer of named whose
// endpoints are hosts.
func (c *Client) setCredentials(sys *types.SystemContext, named reference.Named, hosts []string) error {
	if len(hosts) > 1 || (len(hosts) == 1 && hosts[0] != reference.Domain(named)) {
		// Mirrors or a relocated registry: containers/image looks up each
		// endpoint's own credentials, in the auth file.
		sys.AuthFilePath = c.AuthFile()
		return nil
	}
	creds, err := c.credentials(named)
	if err != nil {
		return err
	}
	sys.DockerAuthConfig = &creds // empty: anonymous, nothing else is read
	return nil
}

// Login checks username and password against registry (host[:port], or
// a repository in it) and stores them in the auth file, whose path it
// returns.
func (c *Client) Login(ctx context.Context, registry, username, password string) (string, error) {
	key, host, err := loginKey(registry)
	if err != nil {
		return "", err
	}
	sys := c.systemContext()
	if named, err := reference.ParseNormalizedNamed(host + "/x"); err == nil {
		allowLoopbackHTTP(ctx, sys, named, true)
	}
	if err := docker.CheckAuth(ctx, sys, username, password, host); err != nil {
		return "", explain(err, host, c.opts.AnswerTimeout)
	}
	file := c.AuthFile()
	if _, err := config.SetCredentials(&types.SystemContext{AuthFilePath: file}, key, username, password); err != nil {
		return "", fmt.Errorf("storing credentials in %s: %w", file, err)
	}
	return file, nil
}

// Logout removes the credentials for registry from the auth file (all of
// them with registry ""). Credentials only docker's config.json holds are
// left to docker logout, and said so.
func (c *Client) Logout(registry string) (string, error) {
	file := c.AuthFile()
	sys := &types.SystemContext{AuthFilePath: file}
	if registry == "" {
		if err := config.RemoveAllAuthentication(sys); err != nil {
			return "", fmt.Errorf("removing credentials from %s: %w", file, err)
		}
		return file, nil
	}
	key, _, err := loginKey(registry)
	if err != nil {
		return "", err
	}
	err = config.RemoveAuthentication(sys, key)
	if errors.Is(err, config.ErrNotLoggedIn) {
		if named, perr := reference.ParseNormalizedNamed(key + "/x"); perr == nil {
			if creds, _ := dockerCredentials(named); creds != (types.DockerAuthConfig{}) {
				return "", fmt.Errorf("not logged in to %s in %s; the credentials found are docker's (%s): use docker logout", key, file, dockerConfigPath())
			}
		}
		return "", fmt.Errorf("not logged in to %s (in %s)", key, file)
	}
	if err != nil {
		return "", fmt.Errorf("removing credentials from %s: %w", file, err)
	}
	return file, nil
}

// loginKey is the auth file key for a login target (docker.io for Docker
// Hub's aliases) and the registry host it names.
func loginKey(target string) (key, host string, err error) {
	key = strings.TrimPrefix(strings.TrimPrefix(target, "https://"), "http://")
	key = strings.TrimSuffix(key, "/")
	switch key {
	case "":
		return "", "", errors.New("name a registry, e.g. registry.example.com")
	case "index.docker.io", "registry-1.docker.io", "index.docker.io/v1":
		key = "docker.io"
	}
	host, _, _ = strings.Cut(key, "/")
	return key, host, nil
}

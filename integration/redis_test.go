package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The seed's Dockerfile, unchanged.
const redisDockerfile = "FROM alpine\nRUN apk add --update redis\nCMD [\"redis-server\"]\n"

// TestRedisExampleBuildsWithApk: examples/redis builds as it is, its
// `apk add --update redis` fetching from a signed Alpine repository the
// test serves on the host's loopback: through the private network by
// default (the repository at host.containers.internal), with
// --network=host at 127.0.0.1; with --network=none it fails cleanly,
// naming the line and apk's error.
func TestRedisExampleBuildsWithApk(t *testing.T) {
	needNAT(t)
	example := filepath.Join(repo, "examples", "redis")
	if b, err := os.ReadFile(filepath.Join(example, "Dockerfile")); err != nil || string(b) != redisDockerfile {
		t.Fatalf("examples/redis/Dockerfile is not the seed's three lines: %q (%v)", b, err)
	}
	apkRepo := newAPKRepo(t)
	tests := []struct {
		name, network, repoHost string
	}{
		{"default network", "", "host.containers.internal"},
		{"host network", "host", "127.0.0.1"},
	}
	forEachAccount(t, func(t *testing.T, a *account) {
		a.mustRun(t, "import", tarball, "alpine-upstream")
		ctxDir := filepath.Join(a.work, "redis")
		copyTree(t, example, ctxDir, a)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				a.makeTestAlpine(t, apkRepo, tt.repoHost)
				before := a.storeLayers(t)
				args := []string{"build", "--progress=plain", "-t", "redis"}
				if tt.network != "" {
					args = append(args, "--network="+tt.network)
				}
				r := a.mustRun(t, append(args, ctxDir)...)
				if strings.Contains(r.stderr, "RUN steps share the host's network") {
					t.Errorf("a NAT helper works here, yet the build warns of the host's network:\n%s", r.stderr)
				}
				if got := a.fileInImage(t, "redis", "usr/bin/redis-server"); got != apkRepo.script {
					t.Errorf("the image's /usr/bin/redis-server is %q, want the test package's", got)
				}
				if cmd := a.inspect(t, "redis").Config.Cmd; !slices.Equal(cmd, []string{"redis-server"}) {
					t.Errorf("Cmd = %q", cmd)
				}
				a.assertNothingLeft(t, before)
			})
		}
		t.Run("no network", func(t *testing.T) {
			// At 127.0.0.1: the step's own loopback, where nothing listens.
			a.makeTestAlpine(t, apkRepo, "127.0.0.1")
			before := a.storeLayers(t)
			r := a.run(t, "build", "--progress=plain", "--network=none", "-t", "redis-offline", ctxDir)
			if r.code == 0 || !strings.Contains(r.stderr, "Dockerfile:2") || !strings.Contains(r.stderr, "RUN apk add --update redis") ||
				!strings.Contains(r.stderr, "ERROR:") || !strings.Contains(r.stderr, "exit code") {
				t.Errorf("--network=none: want a failure naming Dockerfile:2, the RUN and apk's ERROR\n%s", r)
			}
			if out := a.run(t, "inspect", "redis-offline"); out.code == 0 {
				t.Errorf("a failed build stored an image")
			}
			a.assertNothingLeft(t, before)
		})
	})
}

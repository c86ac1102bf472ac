package integration

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestRegistryErrors: each way a pull can fail names what failed, ends in
// a bounded time and leaves the store as it was: no layer, no image.
func TestRegistryErrors(t *testing.T) {
	reg := startRegistry(t, registryOptions{})
	silent := silentServer(t)
	down := freeLoopbackAddr(t)
	forEachAccount(t, func(t *testing.T, a *account) {
		a = a.ownHome(t)
		ns := reg.Host + "/" + a.name
		img := buildAndPush(t, a, ns+"/err:1", "err")
		cases := []struct {
			name, ref string
			want      []string
			env       []string
		}{
			{"no such repository", ns + "/nosuch:1", []string{"not found in the registry", ns + "/nosuch:1"}, nil},
			{"no such tag", ns + "/err:nosuchtag", []string{"not found in the registry", ns + "/err:nosuchtag"}, nil},
			{"nothing listens", down + "/x:1", []string{"registry unreachable", down}, nil},
			{"never answers", silent + "/x:1", []string{"registry unreachable", silent, "did not answer within 2s"},
				[]string{"STEPEXEC_REGISTRY_TIMEOUT=2s"}},
		}
		for i, c := range cases {
			s := a.otherStore("err" + string(rune('a'+i))).withEnv(c.env...)
			start := time.Now()
			r := s.run(t, "pull", c.ref)
			if took := time.Since(start); took > 30*time.Second {
				t.Errorf("%s: the pull took %s", c.name, took)
			}
			for _, w := range c.want {
				if r.code != 1 || !strings.Contains(r.stderr, w) {
					t.Errorf("%s: want exit 1 and %q: %s", c.name, w, r)
				}
			}
			s.assertEmptyStore(t)
		}

		// FROM an image no registry has: the build fails naming the line.
		b := a.otherStore("build")
		r := b.run(t, "build", b.writeContext(t, "missing", "FROM "+ns+"/nosuch:1\nRUN true\n"))
		if r.code != 1 || !strings.Contains(r.stderr, "Dockerfile:1") || !strings.Contains(r.stderr, "not found in the registry") {
			t.Errorf("build FROM a missing image: %s", r)
		}
		b.assertEmptyStore(t)

		// A blob whose bytes do not match its digest (same size, still
		// valid gzip): refused, and the layers already stored go too.
		m, _ := rawManifest(t, a, img.ref)
		top := reg.blobPath(m.Layers[len(m.Layers)-1].Digest.String())
		orig, err := os.ReadFile(top)
		if err != nil {
			t.Fatal(err)
		}
		tampered := append([]byte(nil), orig...)
		tampered[4] ^= 0xff // the gzip header's mtime
		if err := os.WriteFile(top, tampered, 0o644); err != nil {
			t.Fatal(err)
		}
		s := a.otherStore("tampered")
		r = s.run(t, "pull", img.ref)
		os.WriteFile(top, orig, 0o644)
		if r.code != 1 || !strings.Contains(strings.ToLower(r.stderr), "digest") {
			t.Errorf("pull of a tampered blob: %s", r)
		}
		s.assertEmptyStore(t)
	})
}

// assertEmptyStore checks that a's store holds no image and no layer
// (what it held before a failed pull), and nothing else was left.
func (a *account) assertEmptyStore(t *testing.T) {
	t.Helper()
	a.assertClean(t)
	if layers := a.storeLayers(t); len(layers) > 0 {
		t.Errorf("layers left in the store: %v", layers)
	}
	r := a.mustRun(t, "images", "-q")
	if strings.TrimSpace(r.stdout) != "" {
		t.Errorf("images left in the store: %s", r.stdout)
	}
}

// TestRegistryDown: a registry that went away fails a push and a pull as
// unreachable, naming it.
func TestRegistryDown(t *testing.T) {
	forEachAccount(t, func(t *testing.T, a *account) {
		reg := startRegistry(t, registryOptions{})
		img := buildAndPush(t, a, reg.Host+"/down:1", "down")
		reg.Stop()
		p := a.otherStore("down-pull")
		for _, c := range []struct {
			who  *account
			args []string
		}{{a, []string{"push", img.ref}}, {p, []string{"pull", img.ref}}} {
			r := c.who.run(t, c.args...)
			if r.code != 1 || !strings.Contains(r.stderr, "registry unreachable") || !strings.Contains(r.stderr, reg.Host) {
				t.Errorf("%s with the registry down: %s", c.args[0], r)
			}
		}
		p.assertEmptyStore(t)
	})
}

// TestSingleUIDPull: with --single-uid (no subordinate ids) a pulled
// image's files owned by other ids are owned by root, as its import does,
// instead of the pull failing.
func TestSingleUIDPull(t *testing.T) {
	reg := startRegistry(t, registryOptions{})
	a := accounts(t)[0] // the unprivileged user: --single-uid is for users without subordinate ids
	t.Run(a.name, func(t *testing.T) {
		img := buildAndPush(t, a, reg.Host+"/"+a.name+"/single:1", "single")
		s := a.otherStore("single").withEnv("STEPEXEC_QUIET_SINGLE_UID=1")
		s.mustRun(t, "--single-uid", "pull", img.ref)
		r := s.mustRun(t, "--single-uid", "build", "--progress=plain", s.writeContext(t, "single",
			"FROM "+img.ref+"\nRUN stat -c 'owner %u:%g' /etc/shadow\n"))
		if !strings.Contains(r.stderr, "owner 0:0") {
			t.Errorf("/etc/shadow (0:42 in Alpine) in a --single-uid pull: %s", r.stderr)
		}
	})
}

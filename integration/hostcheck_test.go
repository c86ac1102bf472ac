package integration

import (
	"os/exec"
	"os/user"
	"strings"
	"testing"

	"github.com/stepexec/stepexec/internal/testenv"
)

// TestNoSubIDRangeIsDiagnosed: a user without /etc/subuid and /etc/subgid
// entries is told so, in one sentence each, before anything happens.
func TestNoSubIDRangeIsDiagnosed(t *testing.T) {
	testenv.NeedRoot(t, "to run as a second test user")
	u, err := user.Lookup("stepexec-nosub")
	testenv.Need(t, err == nil, "user stepexec-nosub without subids (scripts/setup-host.sh --test-user makes it)")
	a := newAccount(t, u)
	r := a.run(t, "images")
	if r.code == 0 {
		t.Fatalf("images ran without a subuid range: %s", r)
	}
	for _, want := range []string{"/etc/subuid has no entry for user stepexec-nosub", "/etc/subgid has no entry for user stepexec-nosub"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if fileExists(a.root) {
		t.Errorf("a refused run created the store %s", a.root)
	}

	// --single-uid is the explicit way out: it works, and says what breaks.
	r = a.run(t, "--single-uid", "import", tarball)
	if r.code != 0 || !strings.Contains(r.stderr, "single-uid") {
		t.Fatalf("--single-uid import: %s", r)
	}
	ctxDir := a.writeContext(t, "single", "FROM alpine\nRUN echo ok > /ok\n")
	if r = a.run(t, "--single-uid", "build", "-t", "single", ctxDir); r.code != 0 {
		t.Errorf("--single-uid build: %s", r)
	}
	ctxDir = a.writeContext(t, "single-chown", "FROM alpine\nRUN touch /f && chown 1000 /f\n")
	r = a.run(t, "--single-uid", "build", ctxDir)
	if r.code == 0 || !strings.Contains(r.stderr, "Dockerfile:2") {
		t.Errorf("chown to an unmapped uid under --single-uid should fail at Dockerfile:2: %s", r)
	}
	if _, err := exec.LookPath("newuidmap"); err != nil {
		t.Log("newuidmap absent: --single-uid needs no helper")
	}
}

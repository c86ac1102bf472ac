// Package testenv holds what stepexec's tests share about their machine:
// whether a missing prerequisite skips or fails a test, and where the Alpine
// minirootfs is.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// RequireAll is set (STEPEXEC_REQUIRE_ALL=1, as CI does) when every test must
// run: a missing prerequisite is then a failure, not a skip.
func RequireAll() bool { return os.Getenv("STEPEXEC_REQUIRE_ALL") == "1" }

// NeedRoot skips the test unless it runs as root, even under RequireAll:
// being root is not a prerequisite of the machine but of how the suite is
// run. Its run as an unprivileged user (the Vagrant guests' first pass)
// cannot run the test; its run as root (CI's, the guests' second) does.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root, " + why + ": the suite's run as root covers it")
	}
}

// OnRecordingKernel is false when STEPEXEC_OTHER_KERNEL=1 says the suite
// runs on another kernel than the one its recorded outcomes (ATTACKS.md)
// were made on, as in the Vagrant VMs: probes may be refused there with
// other errnos, so a difference from the record is reported, not failed.
func OnRecordingKernel() bool { return os.Getenv("STEPEXEC_OTHER_KERNEL") != "1" }

// Need skips the test, or fails it under RequireAll, unless ok.
func Need(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if RequireAll() {
		t.Fatalf("prerequisite missing (STEPEXEC_REQUIRE_ALL=1): %s", msg)
	}
	t.Skip("prerequisite missing: " + msg)
}

// AlpineName is the base name of the Alpine minirootfs the tests use.
const AlpineName = "alpine-minirootfs-3.20.3-x86_64.tar.gz"

// AlpineTarball returns the Alpine minirootfs: $STEPEXEC_ALPINE_TARBALL,
// else shared/alpine/ beside the repository (found from the working
// directory, which go test sets to the package's), as scripts/alpine.sh
// looks for it.
func AlpineTarball(t testing.TB) string {
	t.Helper()
	p := os.Getenv("STEPEXEC_ALPINE_TARBALL")
	if p == "" {
		p = besideRepo(filepath.Join("shared", "alpine", AlpineName))
	}
	_, err := os.Stat(p)
	Need(t, err == nil, "the Alpine minirootfs (set STEPEXEC_ALPINE_TARBALL or run scripts/alpine.sh): %v", err)
	return p
}

// besideRepo returns rel resolved against the repository's parent
// directory, the repository being the nearest ancestor holding go.mod.
func besideRepo(rel string) string {
	dir, err := os.Getwd()
	if err != nil {
		return rel
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(filepath.Dir(dir), rel)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return rel
		}
		dir = parent
	}
}

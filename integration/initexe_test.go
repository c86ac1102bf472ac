package integration

import (
	"fmt"
	"os"
	"slices"
	"testing"
)

// smallInitExe is /proc/PID/exe of a process running the small init from
// the builder's sealed copy (runtime/initexe.go).
const smallInitExe = "/memfd:stepexec-init (deleted)"

// TestStepsRunTheSmallInit: the binary scripts/build.sh makes carries the
// small init, and a build runs it. The step's init execs the command, so
// what is seen is the step's watcher, which runs from the same sealed
// copy the inits do (the builder checks each init's /proc/PID/exe).
func TestStepsRunTheSmallInit(t *testing.T) {
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		ctxDir := a.writeContext(t, "small-init", "FROM alpine\nRUN printf 'step-now-%s\\n' running; sleep 30; echo "+stepMarker+"\n")
		b := a.start(t, "build", "--progress=plain", "--network=none", ctxDir)
		b.waitFor(t, running, 1)
		var exes []string
		for _, pid := range descendants(b.cmd.Process.Pid) {
			if link, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
				exes = append(exes, link)
			}
		}
		if !slices.Contains(exes, smallInitExe) {
			t.Errorf("no process of the build runs %s: %q\n--- build's stderr\n%s", smallInitExe, exes, b.Stderr())
		}
	})
}

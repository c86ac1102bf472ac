package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// removeStaleCgroups removes the cgroup dirs (see cgroupParent) that
// real-root builds killed before their teardown left behind: those named
// after a pid that no longer runs. Their steps died with the builder, so
// the dirs are empty; rmdir refuses a cgroup that still holds a process.
func removeStaleCgroups() {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/stepexec-*")
	v2, _ := filepath.Glob("/sys/fs/cgroup/stepexec-*")
	for _, d := range append(dirs, v2...) {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "stepexec-"))
		if err != nil || pid <= 0 || processExists(pid) {
			continue
		}
		removeCgroupTree(d)
	}
}

func processExists(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// removeCgroupTree removes the cgroup dir and its child cgroups, deepest
// first (a cgroup's files go with it; only its child dirs must go first).
func removeCgroupTree(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(dir, e.Name()))
		}
	}
	_ = unix.Rmdir(dir)
}

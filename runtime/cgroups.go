package runtime

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	// Makes libcontainer's cgroup managers apply Resources.Devices (v1
	// devices.allow/deny, v2 an eBPF program); without it rules are ignored.
	_ "github.com/opencontainers/cgroups/devices"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"
)

// As real root each step runs in a cgroup of its own, /stepexec-<pid>/<id>
// (v1: in every hierarchy), that holds its device rules and its Limits.
// Rootless, libcontainer makes it under the parent of the process's own
// cgroup (v2), where that is delegated to the user; elsewhere steps get no
// cgroup and cannot be limited (CheckLimits says so).

// cgroupPrefix starts the name of every real-root stepexec process's parent
// cgroup.
const cgroupPrefix = "stepexec-"

// cgroupParent names the cgroup real-root steps get their own cgroup
// under: one per process, so that removing it never races with another
// stepexec process creating a step cgroup in it.
var cgroupParent = cgroupPrefix + strconv.Itoa(os.Getpid())

// deviceRules are docker's and podman's device cgroup rules: deny
// everything, then allow the devices runc allows by default (null, zero,
// full, random, urandom, tty, ptmx and the pts, tun; mknod of any). The
// rootfs is mounted nodev too: these rules also cover what a step might
// reach otherwise.
func deviceRules() []*devices.Rule {
	rules := []*devices.Rule{{Type: devices.WildcardDevice, Major: devices.Wildcard, Minor: devices.Wildcard, Permissions: "rwm", Allow: false}}
	for _, d := range specconv.AllowedDevices {
		r := d.Rule
		rules = append(rules, &r)
	}
	return rules
}

// stepStarting counts a step that may create cgroups.
func (r *Runtime) stepStarting() {
	r.mu.Lock()
	r.active++
	r.mu.Unlock()
}

// stepDone removes the parent cgroup dirs libcontainer's Destroy leaves
// behind once no step of r is running.
func (r *Runtime) stepDone() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active--
	if r.active > 0 {
		return
	}
	for _, d := range r.cgroupDirs(cgroupParent) {
		_ = unix.Rmdir(d) // ENOENT/EBUSY are fine
	}
}

// cgroupDirs lists the directories matching the glob pattern name where
// step cgroups' parents are made: as real root at the top of every cgroup
// hierarchy (v1's, the hybrid unified one, v2's root); rootless on cgroup
// v2 beside the process's own cgroup.
func (r *Runtime) cgroupDirs(name string) []string {
	if !r.realRoot {
		if !cgroups.IsCgroup2UnifiedMode() {
			return nil
		}
		m, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
		if err != nil || m[""] == "" {
			return nil
		}
		found, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", path.Dir(m[""]), name))
		return found
	}
	v1, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	v2, _ := filepath.Glob("/sys/fs/cgroup/" + name)
	return append(v1, v2...)
}

// removeStaleCgroups removes the cgroups of stepexec processes that died
// without cleaning up (SIGKILL): stepexec-<pid> and its step cgroups, in
// every hierarchy, when no process has that pid. A cgroup that still holds
// a process (a step's, dying) stays: rmdir refuses it, and the next
// command tries again.
func (r *Runtime) removeStaleCgroups() {
	for _, d := range r.cgroupDirs(cgroupPrefix + "*") {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), cgroupPrefix))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		removeCgroupTree(d)
	}
}

// removeCgroupTree removes the cgroup dir and its child cgroups, deepest
// first (cgroupfs only lets empty leaves go).
func removeCgroupTree(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(dir, e.Name()))
		}
	}
	_ = unix.Rmdir(dir)
}

func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

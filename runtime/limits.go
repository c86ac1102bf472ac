package runtime

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// Limits caps what a step's processes may use, through the step's cgroup
// (docker build --memory, podman's --pids-limit). The zero value limits
// nothing.
type Limits struct {
	// Memory is the step's memory in bytes, page cache and tmpfs
	// included; it may use as much again of swap where the kernel
	// accounts swap (docker's rule for --memory alone). Over it, the
	// kernel's OOM killer ends a process of the step.
	Memory int64
	// Pids is how many processes (and threads) the step may have at
	// once; a fork beyond it fails with EAGAIN.
	Pids int64
}

func (l Limits) set() bool { return l.Memory > 0 || l.Pids > 0 }

// controllers are the cgroup controllers l needs.
func (l Limits) controllers() []string {
	var c []string
	if l.Memory > 0 {
		c = append(c, "memory")
	}
	if l.Pids > 0 {
		c = append(c, "pids")
	}
	return c
}

// CheckLimits says whether steps can be given l here; if not, why, and
// what would work. Limits need a cgroup the process may manage: as real
// root any (cgroup v1 or v2); otherwise a cgroup v2 subtree delegated to
// the user (systemd's user@.service), because libcontainer places a
// rootless step's cgroup beside the process's own (under its parent).
func (r *Runtime) CheckLimits(l Limits) error {
	if !l.set() {
		return nil
	}
	return r.cgroupHost().check(l)
}

// cgroupHost is what CheckLimits reads, replaceable in tests.
type cgroupHost struct {
	root     string // the cgroup file systems' mount point
	unified  bool   // cgroup v2 only
	realRoot bool
	own      string // this process's cgroup v2 path ("0::" in /proc/self/cgroup)
	writable func(path string) bool
}

func (r *Runtime) cgroupHost() cgroupHost {
	h := cgroupHost{root: "/sys/fs/cgroup", unified: cgroups.IsCgroup2UnifiedMode(), realRoot: r.realRoot,
		writable: func(p string) bool { return unix.Access(p, unix.W_OK) == nil }}
	if m, err := cgroups.ParseCgroupFile("/proc/self/cgroup"); err == nil {
		h.own = m[""]
	}
	return h
}

func (h cgroupHost) check(l Limits) error {
	want := l.controllers()
	switch {
	case h.realRoot && !h.unified:
		return h.checkV1(want)
	case h.realRoot:
		return h.checkAvailable(h.root, want, "is it disabled on the kernel command line (cgroup_disable=)?")
	case !h.unified:
		return errors.New("this host uses cgroup v1, which does not delegate controllers to unprivileged users: run stepexec as root to limit RUN steps (as root, cgroup v1 works), or boot the host with cgroup v2 (systemd.unified_cgroup_hierarchy=1), whose systemd delegates memory and pids to each user")
	}
	return h.checkDelegated(want)
}

// checkV1 checks that each controller's cgroup v1 hierarchy is mounted.
func (h cgroupHost) checkV1(want []string) error {
	for _, c := range want {
		if _, err := os.Stat(filepath.Join(h.root, c, "cgroup.procs")); err != nil {
			return fmt.Errorf("the %s cgroup controller is not mounted at %s (cgroup v1): %w", c, filepath.Join(h.root, c), err)
		}
	}
	return nil
}

// checkDelegated checks the cgroup a rootless step's cgroup is made in:
// the parent of the process's own (which holds processes, so no
// controller can be enabled below it).
func (h cgroupHost) checkDelegated(want []string) error {
	if h.own == "" {
		return errors.New("this process's cgroup v2 path is not in /proc/self/cgroup")
	}
	parent := filepath.Join(h.root, path.Dir(h.own))
	if !h.writable(parent) || !h.writable(filepath.Join(parent, "cgroup.subtree_control")) {
		return fmt.Errorf("RUN steps get their cgroup in %s, beside this process's own (%s), and it is not delegated to you (not writable): run stepexec under systemd's user manager, whose cgroups are yours, e.g. `systemd-run --user --scope stepexec build …`", parent, h.own)
	}
	return h.checkAvailable(parent, want, "ask for it in systemd's delegation of user@.service (Delegate=memory pids in a drop-in such as /etc/systemd/system/user@.service.d/delegate.conf), then log in again")
}

// checkAvailable checks that dir's cgroup.controllers lists every
// controller in want; fix says how to get a missing one.
func (h cgroupHost) checkAvailable(dir string, want []string, fix string) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("reading the cgroup v2 controllers: %w", err)
	}
	have := strings.Fields(string(b))
	for _, c := range want {
		if !slices.Contains(have, c) {
			return fmt.Errorf("the %s cgroup controller is not available in %s (its cgroup.controllers lists %q): %s", c, dir, strings.Join(have, " "), fix)
		}
	}
	return nil
}

// applyLimits sets the step's limits on its cgroup config.
func (s *step) applyLimits(cg *cgroups.Cgroup) {
	l := s.spec.Limits
	if l.Pids > 0 {
		pids := l.Pids
		cg.Resources.PidsLimit = &pids
	}
	if l.Memory > 0 {
		cg.Resources.Memory = l.Memory
		if swapAccounted() {
			cg.Resources.MemorySwap = 2 * l.Memory // memory plus as much swap
		}
	}
}

// swapAccounted says whether the memory controller limits swap here: the
// v1 memsw files, or v2's memory.swap.max in any cgroup (none in the
// root's).
func swapAccounted() bool {
	if !cgroups.IsCgroup2UnifiedMode() {
		return cgroups.PathExists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	}
	found, _ := filepath.Glob("/sys/fs/cgroup/*/memory.swap.max")
	return len(found) > 0
}

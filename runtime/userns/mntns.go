package userns

/*
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>

// 0: not asked for; 1: done; otherwise -errno of the failed call, whose
// name is in stepexec_mntns_call.
static int stepexec_mntns_state;
static const char *stepexec_mntns_call = "";

// Runs before the Go runtime starts its threads: unshare(CLONE_NEWNS) is
// refused (EINVAL) in a multi-threaded process.
__attribute__((constructor)) static void stepexec_private_mntns(void) {
	if (getenv("_STEPEXEC_PRIVATE_MOUNTS") == NULL)
		return;
	// Unset in place (the Go runtime reads the same environment block), so
	// that no child inherits the request.
	unsetenv("_STEPEXEC_PRIVATE_MOUNTS");
	if (unshare(CLONE_NEWNS) != 0) {
		stepexec_mntns_state = -errno;
		stepexec_mntns_call = "unshare(CLONE_NEWNS)";
		return;
	}
	if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
		stepexec_mntns_state = -errno;
		stepexec_mntns_call = "making / rprivate";
		return;
	}
	stepexec_mntns_state = 1;
}

static int stepexec_mntns_result(void) { return stepexec_mntns_state; }
static const char *stepexec_mntns_failed_call(void) { return stepexec_mntns_call; }
*/
import "C"

import (
	"fmt"
	"os"
	"syscall"

	"github.com/opencontainers/runc/libcontainer/exeseal"
	"golang.org/x/sys/unix"
)

// privateMountsEnv asks the C constructor above, in the process Enter
// re-executes as real root, for a private mount namespace.
const privateMountsEnv = "_STEPEXEC_PRIVATE_MOUNTS"

// privateMounts reports whether this process was started with a private
// mount namespace of its own (by the constructor), or why that failed.
func privateMounts() (bool, error) {
	switch st := int(C.stepexec_mntns_result()); {
	case st == 0:
		return false, nil
	case st == 1:
		return true, nil
	default:
		return false, fmt.Errorf("making a private mount namespace as root: %s: %w", C.GoString(C.stepexec_mntns_failed_call()), syscall.Errno(-st))
	}
}

// PrivateMounts reports whether the process runs in the private mount
// namespace Enter makes as real root.
func PrivateMounts() bool {
	done, _ := privateMounts()
	return done
}

// enterRealRoot re-executes the process in place (same pid) from a sealed
// memfd copy of its binary into a mount namespace of its own whose mounts
// are all private, and returns there. The overlays of a real-root build
// then exist only in that namespace: no other process on the host sees
// them in its mount table or can reach them by path, and they vanish with
// the process, however it dies.
func enterRealRoot() error {
	done, err := privateMounts()
	if err != nil {
		return err
	}
	if done && exeseal.IsSelfExeCloned() {
		return nil
	}
	if err := os.Setenv(privateMountsEnv, "1"); err != nil {
		return err
	}
	if exeseal.IsSelfExeCloned() {
		err := unix.Exec("/proc/self/exe", os.Args, os.Environ())
		return fmt.Errorf("re-executing into a private mount namespace: %w", err)
	}
	return execSealedCopy()
}

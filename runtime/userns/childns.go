package userns

/*
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

// stepexec_envint returns the integer in env var name and unsets it; -1
// when it is not set, -2 when it is not a number.
static int stepexec_envint(const char *name) {
	char *v = getenv(name), *end = NULL;
	if (v == NULL)
		return -1;
	long l = strtol(v, &end, 10);
	unsetenv(name);
	if (end == v || *end != '\0' || l < 0)
		return -2;
	return (int)l;
}

static void stepexec_die(const char *what) {
	fprintf(stderr, "stepexec: %s: %s\n", what, strerror(errno));
	_exit(1);
}

// The child Enter starts into the outer namespace. pkg/unshare's own
// constructor would make the namespaces and then re-execute the binary
// through a read-only bind mount of it: a second Go start (~7 ms), and a
// binary whose /proc/self/exe reads "/", which keeps libcontainer from
// sealing each step's init cheaply (a read-only overlay of the binary's
// directory: see runtime.New). Asked to (childEnv), this constructor, which
// runs before pkg/unshare's, follows pkg/unshare's protocol with the
// parent itself (the same environment variables, pipes and order: see
// _containers_unshare in go.podman.io/storage/pkg/unshare/unshare.c),
// consuming its variables, and lets the process start as it is.
__attribute__((constructor(200))) static void stepexec_enter_child(void) {
	if (getenv("_STEPEXEC_ENTER_CHILD") == NULL || getenv("_Containers-unshare") == NULL)
		return;
	unsetenv("_STEPEXEC_ENTER_CHILD");
	int flags = stepexec_envint("_Containers-unshare");
	if (flags < 0) {
		fprintf(stderr, "stepexec: bad _Containers-unshare\n");
		_exit(1);
	}
	if ((flags & CLONE_NEWUSER) && unshare(CLONE_NEWUSER) != 0)
		stepexec_die("unshare(CLONE_NEWUSER)");
	int pidfd = stepexec_envint("_Containers-pid-pipe");
	if (pidfd >= 0) {
		char buf[32];
		int n = snprintf(buf, sizeof buf, "%d", (int)getpid());
		if (write(pidfd, buf, n) != n)
			stepexec_die("writing the pid for the id maps");
		close(pidfd);
	}
	int contfd = stepexec_envint("_Containers-continue-pipe");
	if (contfd >= 0) {
		char buf[2048];
		ssize_t n = read(contfd, buf, sizeof buf);
		if (n > 0) {
			fprintf(stderr, "Error: %.*s\n", (int)n, buf);
			_exit(1);
		}
		close(contfd);
	}
	if (stepexec_envint("_Containers-setsid") == 1 && setsid() == -1)
		stepexec_die("setsid");
	if (stepexec_envint("_Containers-setpgrp") == 1 && setpgrp() == -1)
		stepexec_die("setpgrp");
	int ctty = stepexec_envint("_Containers-ctty");
	if (ctty >= 0 && ioctl(ctty, TIOCSCTTY, 0) == -1)
		stepexec_die("setting the controlling terminal");
	if (flags & CLONE_NEWUSER) {
		if (setresgid(0, 0, 0) != 0)
			stepexec_die("setresgid(0)");
		if (setresuid(0, 0, 0) != 0)
			stepexec_die("setresuid(0)");
	}
	if ((flags & ~CLONE_NEWUSER) && unshare(flags & ~CLONE_NEWUSER) != 0)
		stepexec_die("unshare");
}
*/
import "C"

// childEnv asks the child's constructor above to enter the namespaces.
const childEnv = "_STEPEXEC_ENTER_CHILD"

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

#ifndef F_GET_SEALS
#define F_GET_SEALS 1034
#endif
#define STEPEXEC_BASE_SEALS 0x000f // F_SEAL_SEAL|SHRINK|GROW|WRITE

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

// stepexec_cmdline reads /proc/self/cmdline into a NULL-terminated argv.
static char **stepexec_cmdline(void) {
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t size = 4096, used = 0;
	char *buf = malloc(size);
	for (;;) {
		if (buf == NULL)
			return NULL;
		ssize_t n = read(fd, buf + used, size - used - 1);
		if (n < 0) {
			close(fd);
			return NULL;
		}
		if (n == 0)
			break;
		used += n;
		if (used + 1 == size)
			buf = realloc(buf, size *= 2);
	}
	close(fd);
	buf[used] = '\0';
	size_t count = 0;
	for (size_t i = 0; i < used; i++)
		if (buf[i] == '\0')
			count++;
	char **argv = calloc(count + 1, sizeof(char *));
	if (argv == NULL)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < used && k < count; i += strlen(buf + i) + 1)
		argv[k++] = buf + i;
	return argv;
}

static void stepexec_die(const char *what) {
	fprintf(stderr, "stepexec: %s: %s\n", what, strerror(errno));
	_exit(1);
}

// The child Enter starts into the outer namespace. pkg/unshare's own
// constructor would make the namespaces and then re-execute the binary
// through a read-only bind mount, only for stepexec to re-execute it once
// more from a sealed copy (a whole Go start, ~7 ms, for nothing). When the
// parent hands over the sealed copy it made meanwhile (sealearly.go), this
// constructor, which runs first, follows pkg/unshare's protocol with the
// parent itself (the same environment variables, pipes and order: see
// _containers_unshare in go.podman.io/storage/pkg/unshare/unshare.c) and
// executes the sealed copy directly. Without a hand-over it does nothing.
__attribute__((constructor(200))) static void stepexec_enter_sealed(void) {
	char *fds = getenv("_STEPEXEC_SEALED_FDS");
	if (fds == NULL || getenv("_Containers-unshare") == NULL)
		return;
	int memfd = -1, readyfd = -1;
	if (sscanf(fds, "%d,%d", &memfd, &readyfd) != 2 || memfd < 3 || readyfd < 3)
		return; // pkg/unshare's way; the Go side copies the binary itself
	unsetenv("_STEPEXEC_SEALED_FDS");

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

	// The parent's copy: one byte on the pipe once it is complete and
	// sealed. Anything else, and the Go side makes its own (it finds
	// /proc/self/exe unsealed).
	char ok = 0;
	ssize_t n;
	do {
		n = read(readyfd, &ok, 1);
	} while (n < 0 && errno == EINTR);
	close(readyfd);
	int seals = fcntl(memfd, F_GET_SEALS);
	if (n != 1 || seals < 0 || (seals & STEPEXEC_BASE_SEALS) != STEPEXEC_BASE_SEALS) {
		close(memfd);
		return;
	}
	char **argv = stepexec_cmdline();
	if (argv == NULL) {
		close(memfd);
		return;
	}
	fcntl(memfd, F_SETFD, FD_CLOEXEC);
	fexecve(memfd, argv, environ);
	stepexec_die("executing the sealed copy of the binary");
}
*/
import "C"

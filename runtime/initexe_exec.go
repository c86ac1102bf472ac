package runtime

/*
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

// stepexec_is_init_exe: fd is the sealed small init the builder handed
// over (initexe.go): a memfd of that name, sealed against writes.
static int stepexec_is_init_exe(int fd) {
	static const char want[] = "/memfd:stepexec-init (deleted)";
	char path[32], link[sizeof want + 1];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, link, sizeof link);
	if (n != (ssize_t)(sizeof want - 1) || memcmp(link, want, n) != 0)
		return 0;
	int seals = fcntl(fd, F_GET_SEALS);
	return seals >= 0 && (seals & F_SEAL_WRITE);
}

// A step's init that was given the small init (fd 3, or 4 after the
// seccomp filter) runs it, before this binary's Go runtime or
// libcontainer's nsexec (a constructor without priority, so later) start.
// glibc passes main's arguments to constructors.
__attribute__((constructor(201))) static void stepexec_exec_small_init(int argc, char **argv) {
	if (argc < 2 || strcmp(argv[1], "init") != 0 || getenv("_LIBCONTAINER_INITPIPE") == NULL)
		return;
	for (int fd = 3; fd <= 4; fd++) {
		if (!stepexec_is_init_exe(fd))
			continue;
		fexecve(fd, argv, environ);
		fprintf(stderr, "stepexec: step init: executing the small init: %s\n", strerror(errno));
		_exit(1);
	}
}
*/
import "C"

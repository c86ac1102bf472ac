// Command stepexec-init is a RUN step's init process, and the step
// watcher: stepexec's binary carries it (scripts/build.sh appends it)
// and runs it for both instead of starting the whole builder again.
// See runtime/stepinit and runtime/initexe.go.
package main

import (
	"os"
	goruntime "runtime"

	_ "github.com/opencontainers/runc/libcontainer/nsenter" // the C half of the init, before the Go runtime

	"github.com/stepexec/stepexec/runtime/stepinit"
)

// The filter must be loaded on the main thread (the one that execs the
// command): locked in an init, the main goroutine never leaves it.
func init() { goruntime.LockOSThread() }

func main() {
	if len(os.Args) > 0 && os.Args[0] == stepinit.WatcherArg0 {
		os.Exit(stepinit.RunWatcher())
	}
	stepinit.Main()
}

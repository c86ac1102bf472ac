package runtime

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/stepexec/stepexec/runtime/stepinit"
)

// initLogLevel is the log level of an init given a filter (a variable for
// TestFilterFailsClosed).
var initLogLevel = stepinit.LoadLogLevel

// filterLoaded checks, in the builder, that the step's init (pid, not yet
// exec'd) loaded its filter: it runs in seccomp filter mode under want
// filters (its own plus those it inherited from the builder).
func filterLoaded(pid, want int) error {
	mode, n, err := seccompStatus("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return err
	}
	if mode != "2" || n != want {
		return fmt.Errorf("the step's init did not load its seccomp filter (Seccomp: %s, Seccomp_filters: %d, want 2, %d)", mode, n, want)
	}
	return nil
}

// ownFilters is the number of seccomp filters the calling thread runs
// under (0 unless the builder was started under seccomp).
func ownFilters() (int, error) {
	_, n, err := seccompStatus("/proc/thread-self/status")
	return n, err
}

// seccompStatus reads the Seccomp and Seccomp_filters lines of a
// /proc/PID/status file.
func seccompStatus(path string) (mode string, filters int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", 0, err
	}
	nfilters := ""
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "Seccomp":
			mode = strings.TrimSpace(v)
		case "Seccomp_filters":
			nfilters = strings.TrimSpace(v)
		}
	}
	if filters, err = strconv.Atoi(nfilters); err != nil {
		return "", 0, fmt.Errorf("%s: no Seccomp_filters line (Linux 5.9 or later has one)", path)
	}
	return mode, filters, nil
}

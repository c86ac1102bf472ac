// Command stepexec-probe tries one way out of a RUN step's sandbox and
// prints its verdict as one line on stdout:
//
//	PROBE <id> <BLOCKED|ESCAPED|RAN|UNCLEAR> <detail>
//
// BLOCKED: every attempt was refused. ESCAPED: one got through. RAN: the
// attempt ran and only the host can tell its effect (a process left
// behind, a signal delivered). UNCLEAR: the probe could not tell, e.g. an
// unexpected error; the suite counts it as a failure, as ESCAPED.
//
// It always exits 0, so one build runs every probe. The integration suite
// (integration/attack_test.go) builds it statically, puts it into its base
// image and runs it as `stepexec-probe ID KIND ARGS…`, one RUN per row of
// its table. Details name errnos, never paths or pids, so that ATTACKS.md
// stays the same from run to run.
package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

type verdict struct {
	kind   string // BLOCKED, ESCAPED, RAN, UNCLEAR
	detail string
}

func blocked(format string, a ...any) verdict { return verdict{"BLOCKED", fmt.Sprintf(format, a...)} }
func escaped(format string, a ...any) verdict { return verdict{"ESCAPED", fmt.Sprintf(format, a...)} }
func ran(format string, a ...any) verdict     { return verdict{"RAN", fmt.Sprintf(format, a...)} }
func unclear(format string, a ...any) verdict { return verdict{"UNCLEAR", fmt.Sprintf(format, a...)} }

// kinds are the probes, by the name the suite's table calls them with.
var kinds = map[string]func(args []string) verdict{
	"read-via":         readVia,
	"read-dotdot":      readDotdot,
	"read-symlink":     readSymlink,
	"chroot-breakout":  chrootBreakout,
	"open-by-handle":   openByHandle,
	"write-back":       writeBack,
	"write":            writeValue,
	"read-masked":      readMasked,
	"mknod":            mknodDevices,
	"mount":            mountAttempts,
	"userns":           nestedUserns,
	"userns-inner":     usernsInner,
	"ptrace":           ptraceAttach,
	"signal":           signalProcess,
	"find-process":     findProcess,
	"module":           loadModule,
	"keyctl":           keyctl,
	"sethostname":      setHostname,
	"fds":              openFDs,
	"env":              environment,
	"connect-tcp":      connectTCP,
	"connect-abstract": connectAbstract,
	"interfaces":       interfaces,
	"linger":           linger,
	"linger-child":     lingerChild,
	"fork-storm":       forkStorm,
}

func main() {
	if len(os.Args) < 3 {
		fmt.Println("PROBE ? UNCLEAR usage: stepexec-probe ID KIND ARGS…")
		return
	}
	id, kind := os.Args[1], os.Args[2]
	f, ok := kinds[kind]
	if !ok {
		fmt.Printf("PROBE %s UNCLEAR unknown kind %q\n", id, kind)
		return
	}
	v := run(f, os.Args[3:])
	if v.kind == "" {
		return // a helper process (linger-child, userns-inner) reports itself
	}
	fmt.Printf("PROBE %s %s %s\n", id, v.kind, v.detail)
}

func run(f func([]string) verdict, args []string) (v verdict) {
	defer func() {
		if r := recover(); r != nil {
			v = unclear("probe panicked: %v", r)
		}
	}()
	return f(args)
}

// attempts collects the tries at one attack. The attack is blocked only if
// every try failed with one of the errnos that mean "refused"; a try that
// succeeded is an escape, any other error makes the verdict unclear.
type attempts struct {
	refused, got, odd []string
}

func (a *attempts) try(label string, err error, refusals ...unix.Errno) {
	if err == nil {
		a.got = append(a.got, label+" succeeded")
		return
	}
	var errno unix.Errno
	if !errors.As(err, &errno) {
		a.odd = append(a.odd, fmt.Sprintf("%s: %v", label, err))
		return
	}
	for _, r := range refusals {
		if errno == r {
			a.refused = append(a.refused, label+" "+unix.ErrnoName(errno))
			return
		}
	}
	a.odd = append(a.odd, label+" "+unix.ErrnoName(errno))
}

// escape records a try that got through in a way try cannot see (data read).
func (a *attempts) escape(format string, args ...any) {
	a.got = append(a.got, fmt.Sprintf(format, args...))
}

// refuse records a try that was refused without an errno (nothing visible).
func (a *attempts) refuse(format string, args ...any) {
	a.refused = append(a.refused, fmt.Sprintf(format, args...))
}

func (a *attempts) verdict() verdict {
	switch {
	case len(a.got) > 0:
		return escaped("%s", strings.Join(append(a.got, a.odd...), ", "))
	case len(a.odd) > 0:
		return unclear("%s", strings.Join(append(a.odd, a.refused...), ", "))
	case len(a.refused) == 0:
		return unclear("nothing was tried")
	}
	return blocked("%s", strings.Join(a.refused, ", "))
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

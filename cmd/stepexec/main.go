// Command stepexec builds OCI images from Dockerfiles, rootless and without
// a daemon. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/stepexec/stepexec"
	"github.com/stepexec/stepexec/internal/sigctx"
)

// version is set at link time by scripts/build.sh (git describe).
var version = "dev"

// globalFlags are the flags every command takes.
type globalFlags struct {
	root      string
	runRoot   string
	singleUID bool
}

func main() {
	if stepexec.Reexec() {
		return
	}
	// libcontainer and containers/storage log through logrus; their
	// warnings are for their developers ("unable to get oom kill count" when
	// no memory cgroup is delegated), not for someone building an image.
	logrus.SetLevel(logrus.ErrorLevel)
	if os.Getenv("STEPEXEC_DEBUG") != "" {
		logrus.SetLevel(logrus.DebugLevel)
	}
	// A build's live heap is small (~8 MB for ten RUNs) but each step
	// leaves ~2 MB of garbage (store metadata, step configs): collecting at
	// 50% growth instead of 100% keeps the peak RSS ~5 MB lower for ~1% of
	// CPU. GOGC still overrides it.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	os.Exit(run())
}

func run() int {
	var g globalFlags
	ctx, sig := signalContext()
	rootCmd := &cobra.Command{
		Use:           "stepexec",
		Short:         "Build OCI images from Dockerfiles without root and without a daemon",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := rootCmd.PersistentFlags()
	pf.StringVar(&g.root, "root", "", "storage graph root (default: containers/storage's, ~/.local/share/containers/storage when rootless)")
	pf.StringVar(&g.runRoot, "runroot", "", "storage run root (default: podman's for this user)")
	pf.BoolVar(&g.singleUID, "single-uid", false, "map only your own uid/gid (no /etc/subuid range needed): "+stepexec.WarnSingleUID)

	rootCmd.AddCommand(
		buildCommand(ctx, &g),
		importCommand(ctx, &g),
		pullCommand(ctx, &g),
		pushCommand(ctx, &g),
		loginCommand(ctx),
		logoutCommand(),
		imagesCommand(&g),
		inspectCommand(&g),
		rmiCommand(&g),
		pruneCommand(&g),
		historyCommand(&g),
		systemCommand(&g),
		dfCommand(&g, "df"),
	)
	err := rootCmd.ExecuteContext(ctx)
	if s := sig(); s != 0 {
		// Interrupted: the build already cleaned up; exit as a shell would.
		fmt.Fprintf(os.Stderr, "stepexec: interrupted by %v\n", s)
		return 128 + int(s)
	}
	if errors.Is(err, syscall.EPIPE) {
		// The reader of our output went away (`stepexec images | head`):
		// be quiet about it, as a shell pipeline expects.
		return 128 + int(syscall.SIGPIPE)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

// usageError marks errors in how the command was called.
type usageError struct{ error }

// signalContext is sigctx.New, with SIGPIPE asked for: a write to a
// closed stdout or stderr (say `stepexec build . | head`) is then an EPIPE
// error instead of death, so the build finishes and cleans up; the output
// is just lost. Unlike ignoring it, this does not pass SIG_IGN on to the
// steps' processes.
func signalContext() (context.Context, func() syscall.Signal) {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	return sigctx.New()
}

// openBuilder enters the user namespace (re-executing this command there
// when rootless) and opens the store.
func openBuilder(g *globalFlags) (*stepexec.Builder, error) {
	mode := stepexec.SubIDs
	if g.singleUID {
		mode = stepexec.SingleUID
	}
	if err := stepexec.EnterNamespace(mode); err != nil {
		return nil, err
	}
	if g.singleUID && os.Getenv("STEPEXEC_QUIET_SINGLE_UID") == "" {
		fmt.Fprintln(os.Stderr, "warning: --single-uid: "+stepexec.WarnSingleUID)
	}
	var opts []stepexec.Option
	if g.root != "" {
		opts = append(opts, stepexec.WithRoot(g.root))
	}
	if g.runRoot != "" {
		opts = append(opts, stepexec.WithRunRoot(g.runRoot))
	}
	return stepexec.Open(opts...)
}

package stepexec

import (
	"context"
	"fmt"
	"os"

	"github.com/sirupsen/logrus"

	"github.com/stepexec/stepexec/internal/sigctx"
)

// Main is the whole main function of a program that embeds stepexec: it
// serves the roles the program is re-executed in (Reexec), enters the
// namespace (EnterNamespace, with the WithMode option's mode), opens the
// store (Open, with the other options), runs run with a context cancelled
// by the first SIGINT or SIGTERM, closes the store and exits: 0 after
// success; 1 after an error, which is printed on stderr; 128+n when the
// signal n stopped it (the build cleans up after itself first); 2 for a
// bad option. Main does not return.
//
// Rootless, the program runs twice: main runs again in the re-executed
// child, so what main does before Main happens in both processes.
//
// It quiets the logging of libcontainer and containers/storage (logrus),
// whose warnings are for their developers, unless STEPEXEC_DEBUG is set.
func Main(run func(ctx context.Context, b *Builder) error, opts ...Option) {
	os.Exit(mainCode(run, opts))
}

func mainCode(run func(context.Context, *Builder) error, opts []Option) int {
	if Reexec() {
		return 0
	}
	o, err := applyOptions(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 2
	}
	quietLogs()
	if err := EnterNamespace(o.mode); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	ctx, stopped := sigctx.New()
	err = openAndRun(ctx, run, opts)
	if s := stopped(); s != 0 {
		fmt.Fprintf(os.Stderr, "interrupted by %v\n", s)
		return 128 + int(s)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	return 0
}

// openAndRun runs run on a Builder opened with opts, and closes it.
func openAndRun(ctx context.Context, run func(context.Context, *Builder) error, opts []Option) error {
	b, err := Open(opts...)
	if err != nil {
		return err
	}
	err = run(ctx, b)
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	return err
}

func quietLogs() {
	logrus.SetLevel(logrus.ErrorLevel)
	if os.Getenv("STEPEXEC_DEBUG") != "" {
		logrus.SetLevel(logrus.DebugLevel)
	}
}

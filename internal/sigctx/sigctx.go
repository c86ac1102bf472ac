// Package sigctx turns the first SIGINT or SIGTERM into a cancelled
// context, for the CLI and for stepexec.Main.
package sigctx

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// New returns a context cancelled by the first SIGINT or SIGTERM, and a
// func that tells which one arrived (0 for none). Later signals are
// absorbed: the build is already stopping and cleans up after itself.
func New() (context.Context, func() syscall.Signal) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	got := make(chan syscall.Signal, 1)
	go func() {
		got <- (<-ch).(syscall.Signal)
		cancel()
	}()
	return ctx, func() syscall.Signal {
		select {
		case s := <-got:
			got <- s
			return s
		default:
			return 0
		}
	}
}

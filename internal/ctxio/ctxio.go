// Package ctxio makes long reads stop when their context is cancelled, so
// that Ctrl-C is not kept waiting by a copy of a large file.
package ctxio

import (
	"context"
	"io"
)

// Reader returns a reader that reads r until ctx is cancelled and then
// returns ctx's error. It checks between reads, so a read that blocks
// (a pipe) still blocks; it is for files.
func Reader(ctx context.Context, r io.Reader) io.Reader { return &reader{ctx, r} }

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (c *reader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

package stepexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	goruntime "runtime"

	"github.com/moby/sys/user"

	"github.com/stepexec/stepexec/internal/ctxio"
	"github.com/stepexec/stepexec/internal/safefile"
	"github.com/stepexec/stepexec/rootfs"
	"github.com/stepexec/stepexec/runtime"
)

func goarch() string { return goruntime.GOARCH }

// lookupUser resolves a USER spec ("", "name", "uid:gid", …) against the
// rootfs' /etc/passwd and /etc/group as docker does, including the
// supplementary groups the user is a member of. The files are opened
// inside root, so a symlinked /etc/passwd cannot reach the host's, and only
// if they are regular files: a step can plant a FIFO there, which would
// block the build. Reading them stops when ctx is cancelled.
func lookupUser(ctx context.Context, root, spec string) (runtime.User, error) {
	if spec == "" {
		spec = "0"
	}
	var readers [2]io.Reader // nil (not a nil *os.File) for a missing file
	for i, name := range []string{"/etc/passwd", "/etc/group"} {
		f, err := rootfs.OpenFile(root, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		var nr *safefile.NotRegularError
		if errors.As(err, &nr) {
			return runtime.User{}, fmt.Errorf("the image's %w", err)
		}
		if err != nil {
			return runtime.User{}, fmt.Errorf("reading the image's %s: %w", name, err)
		}
		defer f.Close()
		readers[i] = ctxio.Reader(ctx, f)
	}
	defaults := &user.ExecUser{Uid: 0, Gid: 0, Home: "/"}
	u, err := user.GetExecUser(spec, defaults, readers[0], readers[1])
	if err != nil {
		if ctx.Err() != nil {
			return runtime.User{}, ctx.Err()
		}
		return runtime.User{}, fmt.Errorf("user %q: %w", spec, err)
	}
	out := runtime.User{UID: uint32(u.Uid), GID: uint32(u.Gid)}
	for _, g := range u.Sgids {
		if uint32(g) != out.GID {
			out.AdditionalGIDs = append(out.AdditionalGIDs, uint32(g))
		}
	}
	return out, nil
}

package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/moby/sys/user"

	"github.com/stepexec/stepexec/internal/ctxio"
	"github.com/stepexec/stepexec/internal/safefile"
	"github.com/stepexec/stepexec/rootfs"
	"github.com/stepexec/stepexec/runtime"
)

// openImageFile opens a file of an image rootfs for reading: resolved
// inside root (a symlinked /etc/passwd cannot reach the host's), and
// refused without being opened unless it is a regular file (a FIFO a RUN
// planted cannot hang the build, a device is never opened). A missing
// file is fs.ErrNotExist.
func openImageFile(root, p string) (*os.File, error) {
	f, err := rootfs.OpenFile(root, p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fs.ErrNotExist
		}
		var nr *safefile.NotRegularError
		if errors.As(err, &nr) {
			return nil, fmt.Errorf("the image's %w", err)
		}
		return nil, fmt.Errorf("reading the image's %s: %w", p, err)
	}
	return f, nil
}

// openOrEmpty is openImageFile with a missing file read as empty; reads
// stop when ctx is cancelled.
func openOrEmpty(ctx context.Context, root, p string) (io.ReadCloser, error) {
	f, err := openImageFile(root, p)
	if errors.Is(err, fs.ErrNotExist) {
		return io.NopCloser(strings.NewReader("")), nil
	}
	if err != nil {
		return nil, err
	}
	return readCloser{ctxio.Reader(ctx, f), f}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// lookupUser resolves a USER spec ("", "name", "uid", "name:group", …)
// against the image's /etc/passwd and /etc/group as docker does, with the
// supplementary groups the user is a member of. A name missing from the
// files is an error; a numeric uid need not be listed.
func lookupUser(ctx context.Context, root, spec string) (runtime.User, error) {
	if spec == "" {
		spec = "0"
	}
	passwd, err := openOrEmpty(ctx, root, "/etc/passwd")
	if err != nil {
		return runtime.User{}, err
	}
	defer passwd.Close()
	group, err := openOrEmpty(ctx, root, "/etc/group")
	if err != nil {
		return runtime.User{}, err
	}
	defer group.Close()
	defaults := &user.ExecUser{Uid: 0, Gid: 0, Home: "/"}
	u, err := user.GetExecUser(spec, defaults, passwd, group)
	if err != nil {
		if ctx.Err() != nil {
			return runtime.User{}, ctx.Err()
		}
		return runtime.User{}, fmt.Errorf("USER %s: %w", spec, err)
	}
	// The primary group is a supplementary one too (BuildKit's executor and
	// docker: `id` shows groups=GID,…).
	out := runtime.User{UID: uint32(u.Uid), GID: uint32(u.Gid), AdditionalGIDs: []uint32{uint32(u.Gid)}}
	for _, g := range u.Sgids {
		if uint32(g) != out.GID {
			out.AdditionalGIDs = append(out.AdditionalGIDs, uint32(g))
		}
	}
	return out, nil
}

// resolveChown is BuildKit's readUser for COPY --chown and WORKDIR: a name
// is looked up in the image (its primary group comes with it; a name that
// is not there means root), a number is used as is and also as the group
// when none is given; "root" is 0.
func resolveChown(ctx context.Context, root, spec string) (uid, gid int, err error) {
	userPart, groupPart, _ := strings.Cut(spec, ":")
	if id, ok := numericID(userPart); ok {
		uid, gid = id, id
	} else {
		pw, err := openOrEmpty(ctx, root, "/etc/passwd")
		if err != nil {
			return 0, 0, err
		}
		users, err := user.ParsePasswdFilter(pw, func(u user.User) bool { return u.Name == userPart })
		pw.Close()
		if err != nil {
			return 0, 0, fmt.Errorf("reading /etc/passwd: %w", err)
		}
		if len(users) > 0 {
			uid, gid = users[0].Uid, users[0].Gid
		}
	}
	if groupPart == "" {
		return uid, gid, nil
	}
	if id, ok := numericID(groupPart); ok {
		return uid, id, nil
	}
	gr, err := openOrEmpty(ctx, root, "/etc/group")
	if err != nil {
		return 0, 0, err
	}
	defer gr.Close()
	groups, err := user.ParseGroupFilter(gr, func(g user.Group) bool { return g.Name == groupPart })
	if err != nil {
		return 0, 0, fmt.Errorf("reading /etc/group: %w", err)
	}
	if len(groups) > 0 {
		gid = groups[0].Gid
	}
	return uid, gid, nil
}

func numericID(s string) (int, bool) {
	if s == "root" {
		return 0, true
	}
	n, err := strconv.ParseInt(s, 10, 32)
	return int(n), err == nil
}

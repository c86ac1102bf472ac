package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/dockerfile"
	"github.com/stepexec/stepexec/runtime"
	"github.com/stepexec/stepexec/snapshot"
)

// runMounts expands and checks a RUN's --mount flags against what the
// build has (stages, context, secrets), as BuildKit's dispatchRunMounts
// and dispatchSecret do: targets relative to WORKDIR, cache ids defaulting
// to the target, secret ids to the source or the target's base name.
func runMounts(req Request, p *stagePlan, st State, c *dockerfile.Run) ([]dockerfile.Mount, error) {
	ms, err := req.Graph.Expander().Mounts(c, st.RunEnv())
	if err != nil {
		return nil, fmt.Errorf("--mount: %w", err)
	}
	for i := range ms {
		m := &ms[i]
		if m.Type == "secret" {
			if err := checkSecret(req, m); err != nil {
				return nil, err
			}
			continue
		}
		if m.Type == "ssh" {
			return nil, errors.New("--mount=type=ssh is not supported: stepexec has no SSH agent forwarding")
		}
		if m.Target == "" {
			return nil, fmt.Errorf("--mount=type=%s needs a target", m.Type)
		}
		if !path.IsAbs(m.Target) {
			m.Target = path.Join("/", st.workdir(), m.Target)
		}
		m.Target = path.Clean(m.Target)
		if m.Target == "/" {
			return nil, fmt.Errorf("--mount: invalid mount target %q", m.Target)
		}
		switch m.Type {
		case "cache":
			if m.From != "" {
				return nil, errors.New("--mount=type=cache,from= is not supported: a cache starts empty")
			}
			if m.ID == "" {
				m.ID = m.Target
			}
		case "bind":
			if m.From == "" && req.Context == nil {
				return nil, errors.New("--mount=type=bind without from= needs a build context")
			}
			if m.From == "" {
				if _, err := contextPath(req.Context, m.Source); err != nil {
					return nil, err
				}
			}
		}
	}
	return ms, nil
}

func checkSecret(req Request, m *dockerfile.Mount) error {
	if m.Source != "" {
		m.ID = m.Source
	}
	if m.ID == "" {
		if m.Target == "" {
			return errors.New("--mount=type=secret: one of id, source or target is required")
		}
		m.ID = path.Base(m.Target)
	}
	if m.Env == nil && m.Target == "" {
		m.Target = "/run/secrets/" + path.Base(m.ID)
	}
	if _, ok := req.Secrets[m.ID]; !ok && m.Required {
		return fmt.Errorf("--mount=type=secret: secret %q is required but was not given (pass it with --secret id=%s,src=FILE or env=VAR)", m.ID, m.ID)
	}
	return nil
}

// contextPath resolves a source path inside the build context, never
// following a symlink out of it, and checks it exists.
func contextPath(c ContextSource, src string) (string, error) {
	p, err := securejoin.SecureJoin(c.Dir(), src)
	if err != nil {
		return "", fmt.Errorf("resolving %s in the build context: %w", src, err)
	}
	if _, err := os.Lstat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s: not found in the build context", path.Join("/", src))
		}
		return "", err
	}
	return p, nil
}

// mountSet is the runtime mounts of one RUN and how to undo their setup.
type mountSet struct {
	mounts  []runtime.Mount
	env     []string // secrets given as environment variables
	cleanup []func() error
}

func (s *mountSet) release() error {
	var errs []error
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		errs = append(errs, s.cleanup[i]())
	}
	return errors.Join(errs...)
}

// prepareMounts turns a RUN's checked mounts into runtime mounts: views of
// stages and images, cache directories, tmpfs, secret files.
func (r *stepRun) prepareMounts(ctx context.Context, st State, ms []dockerfile.Mount) (*mountSet, error) {
	set := &mountSet{}
	for i, m := range ms {
		if err := r.prepareMount(ctx, set, i, m); err != nil {
			return nil, errors.Join(err, set.release())
		}
	}
	return set, nil
}

func (r *stepRun) prepareMount(ctx context.Context, set *mountSet, i int, m dockerfile.Mount) error {
	add := func(src runtime.MountSource) {
		set.mounts = append(set.mounts, runtime.Mount{Target: m.Target, Source: src, ReadOnly: m.ReadOnly})
	}
	switch m.Type {
	case "tmpfs":
		add(runtime.Tmpfs{Size: m.SizeLimit})
	case "secret":
		data, ok := r.b.req.Secrets[m.ID]
		if !ok {
			return nil // optional and not given: no mount, as BuildKit
		}
		if m.Env != nil {
			name := *m.Env
			if name == "" {
				name = m.ID
			}
			set.env = append(set.env, name+"="+string(data))
		}
		if m.Target != "" {
			mode := fs.FileMode(0o400)
			if m.Mode != nil {
				mode = fs.FileMode(*m.Mode)
			}
			add(runtime.Secret{Data: data, Mode: mode, UID: deref(m.UID), GID: deref(m.GID)})
		}
	case "cache":
		dir, release, err := r.b.cacheDir(ctx, m)
		if err != nil {
			return err
		}
		set.cleanup = append(set.cleanup, release)
		add(runtime.Bind{Path: dir})
	case "bind":
		src, idmapped, err := r.bindSource(ctx, set, i, m)
		if err != nil {
			return err
		}
		add(runtime.Bind{Path: src, DiscardWrites: !m.ReadOnly, IDMapped: idmapped})
	default:
		return fmt.Errorf("--mount=type=%s is not supported", m.Type)
	}
	return nil
}

// bindSource is the host path a bind mount shows: in the context, or in a
// read-only view of a stage's or image's layers made for the step (which,
// as real root, already shows the step's ids: idmapped).
func (r *stepRun) bindSource(ctx context.Context, set *mountSet, i int, m dockerfile.Mount) (p string, idmapped bool, err error) {
	if m.From == "" {
		p, err := contextPath(r.b.req.Context, m.Source)
		return p, false, err
	}
	top, err := r.fromTop(ctx, m.From, m.FromStage)
	if err != nil {
		return "", false, err
	}
	key := r.key("m" + strconv.Itoa(i))
	view, err := r.b.deps.Snaps.View(ctx, key, top, snapshot.ForStep())
	if err != nil {
		return "", false, err
	}
	set.cleanup = append(set.cleanup, func() error { return r.b.deps.Snaps.Remove(context.Background(), key) })
	if p, err = securejoin.SecureJoin(view.Dir, m.Source); err != nil {
		return "", false, err
	}
	if _, err := os.Lstat(p); err != nil {
		return "", false, fmt.Errorf("--mount from=%s: %s: %w", m.From, path.Join("/", m.Source), err)
	}
	return p, view.IDMapped, nil
}

// fromTop is the top layer of the stage or image a --from names.
func (r *stepRun) fromTop(ctx context.Context, ref string, stage *dockerfile.Stage) (string, error) {
	if stage != nil {
		st, err := r.b.wait(ctx, stage)
		if err != nil {
			return "", err
		}
		return st.Top(), nil
	}
	img := r.p.images[ref]
	if img == nil {
		return "", fmt.Errorf("image %s was not resolved", ref)
	}
	if len(img.Layers) == 0 {
		return "", nil
	}
	return img.Layers[len(img.Layers)-1].ID, nil
}

// cacheDir returns the persistent directory of a cache mount, created with
// its mode and owner when new, locked for sharing=locked (and for private,
// which gets a throwaway directory when the cache is busy).
func (b *build) cacheDir(ctx context.Context, m dockerfile.Mount) (string, func() error, error) {
	if b.deps.CacheDir == "" {
		return "", nil, errors.New("--mount=type=cache: no cache directory configured")
	}
	sum := sha256.Sum256([]byte(m.ID))
	dir := filepath.Join(b.deps.CacheDir, hex.EncodeToString(sum[:16]))
	if err := os.MkdirAll(b.deps.CacheDir, 0o700); err != nil {
		return "", nil, err
	}
	lock, err := os.OpenFile(dir+".lock", os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return "", nil, err
	}
	release := func() error { return lock.Close() }
	switch m.Sharing {
	case "locked":
		err = flockCtx(ctx, int(lock.Fd()), unix.LOCK_EX)
	case "private":
		if err = unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
			lock.Close()
			tmp, err := os.MkdirTemp(b.deps.CacheDir, "private-")
			if err != nil {
				return "", nil, err
			}
			return tmp, func() error { return os.RemoveAll(tmp) }, applyCacheOwner(tmp, m)
		}
	default: // shared
		err = flockCtx(ctx, int(lock.Fd()), unix.LOCK_SH)
	}
	if err != nil {
		lock.Close()
		return "", nil, fmt.Errorf("locking cache %s: %w", m.ID, err)
	}
	if err := os.Mkdir(dir, 0o755); err == nil {
		if err := applyCacheOwner(dir, m); err != nil {
			release()
			return "", nil, err
		}
	} else if !errors.Is(err, fs.ErrExist) {
		release()
		return "", nil, err
	}
	return dir, release, nil
}

func applyCacheOwner(dir string, m dockerfile.Mount) error {
	mode := fs.FileMode(0o755)
	if m.Mode != nil {
		mode = fs.FileMode(*m.Mode)
	}
	if err := os.Chmod(dir, mode); err != nil {
		return err
	}
	return os.Lchown(dir, int(deref(m.UID)), int(deref(m.GID)))
}

// flockCtx takes a flock, waiting until it is free or ctx is done.
func flockCtx(ctx context.Context, fd, how int) error {
	for {
		err := unix.Flock(fd, how|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func deref(p *uint32) uint32 {
	if p == nil {
		return 0
	}
	return *p
}

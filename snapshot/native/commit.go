package native

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"

	"github.com/stepexec/stepexec/snapshot"
)

// Commit writes the changes of the snapshot key (see the package doc) as
// a layer tar, stores it as layers/<id> and removes the snapshot, on
// success and on failure. No changes give Empty (an empty layer with
// KeepEmpty); a layer stored already is Reused.
func (s *Store) Commit(ctx context.Context, key string, opts ...snapshot.CommitOpt) (c snapshot.Committed, err error) {
	sn := s.take(key)
	if sn == nil {
		return snapshot.Committed{}, fmt.Errorf("native: Commit %q: no such snapshot", key)
	}
	defer func() {
		if rerr := removeTree(sn.dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("native: removing snapshot %q: %w", key, rerr))
		}
	}()
	if sn.view {
		return snapshot.Committed{}, fmt.Errorf("native: Commit %q: a view cannot be committed", key)
	}
	if err := ctx.Err(); err != nil {
		return snapshot.Committed{}, err
	}
	ch, err := diff(sn.tree(), sn.before)
	if err != nil {
		return snapshot.Committed{}, fmt.Errorf("native: Commit %q: %w", key, err)
	}
	o := snapshot.CommitOptionsOf(opts)
	if ch.empty() && !o.KeepEmpty {
		return snapshot.Committed{Empty: true}, nil
	}
	c, err = s.commit(ctx, sn, ch, o)
	if err != nil {
		return snapshot.Committed{}, fmt.Errorf("native: Commit %q: %w", key, err)
	}
	return c, nil
}

// commit writes the layer of ch into a staging directory of the snapshot
// and stores it.
func (s *Store) commit(ctx context.Context, sn *snap, ch *changes, opts snapshot.CommitOptions) (snapshot.Committed, error) {
	staged := filepath.Join(sn.dir, "layer")
	if err := os.Mkdir(staged, 0o700); err != nil {
		return snapshot.Committed{}, err
	}
	m, files, bytes, err := writeTar(ctx, filepath.Join(staged, tarName), sn.tree(), ch)
	if err != nil {
		return snapshot.Committed{}, err
	}
	m.Parent, m.Names = sn.parent, opts.Names
	m.ID = snapshot.LayerID(sn.parent, m.DiffID)
	if err := ctx.Err(); err != nil {
		return snapshot.Committed{}, err
	}
	reused, err := s.store(staged, m)
	if err != nil {
		return snapshot.Committed{}, err
	}
	return snapshot.Committed{Layer: m.layer(), Reused: reused, Files: files, Bytes: bytes}, nil
}

// writeTar writes the layer tar of ch to file, durably, and returns its
// DiffID and size (in m) and its counts.
func writeTar(ctx context.Context, file, tree string, ch *changes) (m layerMeta, files int, bytes int64, err error) {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return m, 0, 0, err
	}
	defer f.Close()
	digester := digest.Canonical.Digester()
	counter := &countingWriter{}
	w := io.MultiWriter(f, digester.Hash(), counter)
	if files, bytes, err = snapshot.WriteTreeTar(ctx, w, tree, ch); err != nil {
		return m, 0, 0, err
	}
	if err := f.Sync(); err != nil {
		return m, 0, 0, fmt.Errorf("writing %s: %w", file, err)
	}
	m.DiffID, m.Size = digester.Digest(), counter.n
	return m, files, bytes, f.Close()
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	return len(b), nil
}

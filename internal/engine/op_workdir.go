package engine

import (
	"context"

	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/internal/cache"
	"github.com/stepexec/stepexec/rootfs"
	"github.com/stepexec/stepexec/snapshot"
)

// workdir makes the working directory st names (already set in its config)
// in a layer of its own, as BuildKit does: missing directories are created
// 0755, owned by the stage's USER; "/" makes no layer.
func (r *stepRun) workdir(ctx context.Context, st State) (State, error) {
	wd := st.workdir()
	createdBy := "WORKDIR " + wd
	if wd == "/" {
		return st.withHistory(createdBy, true), nil
	}
	user := st.Config().User
	key, err := cache.Chain(st.key, "workdir", struct{ Path, User string }{wd, user})
	if err != nil {
		return st, err
	}
	hit, ok, release, err := r.cached(ctx, st, key, createdBy)
	if err != nil || ok {
		return hit, err
	}
	defer func() { r.afterCommit(release) }()
	st, c, err := r.inSnapshot(ctx, st, key, nil, func(snap *snapshot.Snapshot) error {
		uid, gid, err := resolveChown(ctx, snap.Dir, st.Config().User)
		if err != nil {
			return err
		}
		_, err = rootfs.MkdirAll(snap.Dir, wd, uid, gid)
		return err
	})
	if err != nil {
		return st, err
	}
	return st.withHistory(createdBy, c.Empty), nil
}

func toImageLayer(l snapshot.Layer) image.Layer {
	return image.Layer{ID: l.ID, DiffID: l.DiffID, Size: l.Size}
}

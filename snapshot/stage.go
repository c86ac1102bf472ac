package snapshot

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	digest "github.com/opencontainers/go-digest"
	tsstorage "github.com/vbatts/tar-split/tar/storage"
	"go.podman.io/storage"
	drivers "go.podman.io/storage/drivers"
	"go.podman.io/storage/pkg/archive"
	"golang.org/x/sys/unix"
)

// A layer record is what the store must know about a layer besides its
// files: the facts PutLayer would have derived by re-reading the tar.
// Commit computes it from the (unmounted) upper directory, then hands the
// directory itself to the store ("staged" commit, see stagedDiffer).
type layerRecord struct {
	diffID     digest.Digest
	size       int64 // bytes of the uncompressed tar
	files      int   // tar entries
	onDisk     int   // of those, the ones that are files on disk (not opaque markers)
	bytes      int64 // regular-file content bytes
	uids, gids []uint32
	// tarSplit holds the tar-split metadata (uncompressed JSON lines) from
	// which the store's Diff reassembles the exact tar from the files.
	tarSplit *os.File
	// fixups are upper-relative paths that carry overlay xattrs of the
	// mount (origin, impure, opaque in the mount's namespace): they are
	// rewritten to the form the store's own layers have (see fixXattrs).
	fixups []xattrFixup
}

type xattrFixup struct {
	rel    string
	opaque bool
	names  []string // overlay xattrs present
}

// recordLayer writes the layer tar of upper into a splitRecorder, which
// hashes it and records its tar-split metadata (headers and padding
// verbatim, a crc64 of each file's content) into tsPath. The tar is never
// stored: the store's Diff rebuilds it from tar-split and the files.
func recordLayer(ctx context.Context, upper, tsPath string) (rec *layerRecord, err error) {
	ts, err := os.OpenFile(tsPath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating tar-split file: %w", err)
	}
	defer func() {
		if err != nil {
			ts.Close()
		}
	}()
	tsBuf := fileBuffers.get()
	defer fileBuffers.put(tsBuf)
	tsBuf.Reset(ts)
	split := newSplitRecorder(tsstorage.NewJSONPacker(tsBuf))
	defer split.abort()

	uids, gids := map[uint32]struct{}{}, map[uint32]struct{}{}
	onDisk := 0
	var fixups []xattrFixup
	lw := newLayerWriter(ctx, split, upper)
	lw.onHeader = func(h *tar.Header) {
		split.entry(h.Name, h.Size)
		if filepath.Base(h.Name) != archive.WhiteoutOpaqueDir {
			onDisk++
		}
		// As PutLayer does: whiteouts' owners are not the layer's ids.
		if !isWhiteoutName(h.Name) {
			uids[uint32(h.Uid)] = struct{}{}
			gids[uint32(h.Gid)] = struct{}{}
		}
	}
	lw.onOverlayXattrs = func(rel string, opaque bool, names []string) {
		fixups = append(fixups, xattrFixup{rel: rel, opaque: opaque, names: names})
	}
	runErr := lw.run()
	diffID, size, splitErr := split.finish()
	// A tar-split failure (e.g. a full disk) is the cause of the writer's.
	switch {
	case splitErr != nil:
		return nil, fmt.Errorf("tar-split of %s into %s: %w", upper, tsPath, splitErr)
	case runErr != nil:
		return nil, runErr
	}
	if err := tsBuf.Flush(); err != nil {
		return nil, fmt.Errorf("writing tar-split file %s: %w", tsPath, err)
	}
	return &layerRecord{
		diffID:   diffID,
		size:     size,
		files:    lw.files,
		onDisk:   onDisk,
		bytes:    lw.bytes,
		uids:     slices.Sorted(maps.Keys(uids)),
		gids:     slices.Sorted(maps.Keys(gids)),
		tarSplit: ts,
		fixups:   fixups,
	}, nil
}

func isWhiteoutName(name string) bool {
	base := filepath.Base(name)
	return len(base) >= len(whiteoutPrefix) && base[:len(whiteoutPrefix)] == whiteoutPrefix
}

// errCrossDevice says the upper directory cannot be renamed into the
// store's staging directory because they are on different mounts (e.g. a
// bind mount of <graphroot>/overlay made by another tool as real root).
var errCrossDevice = errors.New("upper and staging directories are on different mounts")

// stagedDiffer is a drivers.Differ that "applies" a layer by putting an
// unmounted overlay upper directory in the place of the overlay driver's
// staging directory: no copy, no untar. The overlay driver then renames the
// staging directory to the layer's diff directory (ApplyStagedLayer).
//
// An upper directory already is an overlay layer in the format the driver
// keeps its diff directories in: whiteouts are 0/0 character devices and
// opaque directories carry <ns>.overlay.opaque=y, where <ns> is "user" in
// rootless mode (userxattr mounts) and "trusted" as root, the same choice
// containers/storage makes (archive.GetOverlayXattrName). The overlay
// xattrs the kernel adds for its own bookkeeping (origin, impure, ...) are
// removed, and an opaque marker in the other namespace is rewritten, by
// the commit before it stages the directory (fixXattrs).
type stagedDiffer struct {
	upper string
	rec   *layerRecord
	moved bool
}

func (d *stagedDiffer) ApplyDiff(dest string, _ *archive.TarOptions, _ *drivers.DifferOptions) (drivers.DriverWithDifferOutput, error) {
	// The upper dir itself takes dest's place (and dest the upper's), its
	// entries untouched: a snapshot may stand on it meanwhile (pending.go).
	if err := unix.Renameat2(unix.AT_FDCWD, d.upper, unix.AT_FDCWD, dest, unix.RENAME_EXCHANGE); err != nil {
		if errors.Is(err, unix.EXDEV) {
			return drivers.DriverWithDifferOutput{}, fmt.Errorf("moving %s to %s: %w", d.upper, dest, errCrossDevice)
		}
		return drivers.DriverWithDifferOutput{}, fmt.Errorf("moving %s to %s: %w", d.upper, dest, err)
	}
	d.moved = true
	return drivers.DriverWithDifferOutput{
		Differ:             d,
		Size:               d.rec.size,
		UIDs:               d.rec.uids,
		GIDs:               d.rec.gids,
		UncompressedDigest: d.rec.diffID,
		// No TarSplit: commitStaged stores it (writeTarSplit).
	}, nil
}

func (d *stagedDiffer) Close() error { return nil }

// fixXattrs makes the overlay xattrs under dir those of a layer the store
// unpacked itself: only the opaque marker, in the store's namespace.
func fixXattrs(dir string, fixups []xattrFixup) error {
	storeOpaque := archive.GetOverlayXattrName("opaque")
	for _, f := range fixups {
		p := filepath.Join(dir, f.rel)
		for _, name := range f.names {
			if f.opaque && name == storeOpaque {
				continue
			}
			err := unix.Lremovexattr(p, name)
			if err != nil && !errors.Is(err, unix.ENODATA) {
				return fmt.Errorf("removing overlay xattr %s from %s: %w", name, p, err)
			}
		}
		if f.opaque && !slices.Contains(f.names, storeOpaque) {
			if err := unix.Lsetxattr(p, storeOpaque, []byte("y"), 0); err != nil {
				return fmt.Errorf("marking %s opaque (%s): %w", p, storeOpaque, err)
			}
		}
	}
	return nil
}

// commitStaged stores the upper directory of st as layer id through the
// store's staged-layer API (PrepareStagedLayer + ApplyStagedLayer). On
// failure nothing is left in the store; errCrossDevice means nothing was
// moved and the upper directory is intact.
func (s *Store) commitStaged(st *snapState, id string, rec *layerRecord, names []string) (*storage.Layer, error) {
	d := &stagedDiffer{upper: st.upper(), rec: rec}
	diffOpts := &drivers.ApplyDiffWithDifferOpts{}
	out, err := s.store.PrepareStagedLayer(diffOpts, d)
	if err != nil {
		if out != nil && out.Target != "" {
			_ = s.store.CleanupStagedLayer(out)
		}
		return nil, err
	}
	staging := filepath.Dir(out.Target)
	l, err := s.store.ApplyStagedLayer(storage.ApplyStagedLayerOptions{
		ID:           id,
		ParentLayer:  st.snap.Parent,
		Names:        names,
		LayerOptions: madeLayer(),
		DiffOutput:   out,
		DiffOptions:  diffOpts,
	})
	if err != nil {
		// The layer record was deleted by the store; the staging
		// directory may remain if the failure came before its rename.
		if _, serr := os.Lstat(staging); serr == nil {
			_ = s.store.CleanupStagedLayer(out)
		}
		return nil, err
	}
	// The driver renames <staging>/dir away and deletes the lock file, but
	// leaves the (now empty) <staging> directory for its next prune.
	_ = os.Remove(staging)
	// Until the tar-split is stored the layer's Diff would be wrong; no
	// image or cache entry can name the layer before Commit returns, and
	// a crash here leaves it to the lease's collection like any layer a
	// dead build made.
	if err := s.writeTarSplit(id, rec.tarSplit); err != nil {
		_ = s.deleteStoreLayer(id)
		return nil, err
	}
	// Older podman (containers/storage < v1.54) deletes the staging area
	// whenever it opens the store; if that raced the final rename the layer
	// would silently lack files. Counting them is cheap next to the hashing
	// already done, and turns that race into an error.
	if n, err := countEntries(filepath.Join(s.graphRoot, "overlay", id, "diff")); err != nil || n != rec.onDisk {
		_ = s.deleteStoreLayer(id)
		if err == nil {
			err = fmt.Errorf("layer %s holds %d entries, %d were committed: was the store's staging directory removed by a concurrent podman (older than 4.4)? Run the build again", id, n, rec.onDisk)
		}
		return nil, err
	}
	return l, nil
}

// countEntries counts what is below dir.
func countEntries(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			n++
		}
		return nil
	})
	return n, err
}

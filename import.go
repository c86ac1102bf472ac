package stepexec

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/rootfs"
	"github.com/stepexec/stepexec/snapshot"
)

// defaultPath is the PATH docker gives an image that sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ImportOptions names an imported root filesystem.
type ImportOptions struct {
	// Names for the image; when empty they come from the tarball's
	// /etc/os-release (Alpine 3.20.3 → alpine:3.20.3, alpine:3.20, alpine:latest).
	Names []string
	// Source describes the tarball in the image's history.
	Source string
}

// ImportResult is what an import made.
type ImportResult struct {
	Image image.Image    // the stored image, with its names
	Layer snapshot.Layer // its one layer
	Stats rootfs.Stats   // what was unpacked, and what could not be stored as it was
}

// Import stores a root filesystem tarball (plain, or compressed with gzip,
// bzip2, xz or zstd) as a one-layer base image. The layer's ID is its diffID, so importing the same tarball
// again yields the same layer.
func (b *Builder) Import(ctx context.Context, r io.Reader, opts ImportOptions) (ImportResult, error) {
	key := "import-" + randomID()
	snap, err := b.store.Prepare(ctx, key, "")
	if err != nil {
		return ImportResult{}, err
	}
	var unpackOpts []rootfs.UnpackOption
	if b.identity.squashesOwners() {
		unpackOpts = append(unpackOpts, rootfs.SquashOwners())
	}
	src, stop := cancelableReader(ctx, r)
	stats, err := rootfs.Unpack(ctx, src, snap.Dir, unpackOpts...)
	stop()
	if err != nil {
		b.store.Remove(ctx, key)
		return ImportResult{}, fmt.Errorf("importing %s: %w", opts.Source, err)
	}
	names := opts.Names
	if len(names) == 0 {
		osr, err := rootfs.OSRelease(snap.Dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			b.store.Remove(ctx, key)
			return ImportResult{}, fmt.Errorf("%s: cannot name the image after its os-release: %w; give a name", opts.Source, err)
		}
		names = rootfs.ImportNames(osr)
	}
	if len(names) == 0 {
		b.store.Remove(ctx, key)
		return ImportResult{}, fmt.Errorf("%s has no /etc/os-release to name the image after: give a name", opts.Source)
	}
	normalized := make([]string, 0, len(names))
	for _, n := range names {
		nn, err := image.Normalize(n)
		if err != nil {
			b.store.Remove(ctx, key)
			return ImportResult{}, err
		}
		normalized = append(normalized, nn)
	}
	hasShell := false
	if fi, err := os.Lstat(snap.Dir + "/bin/sh"); err == nil && fi.Mode().Type() != os.ModeDir {
		hasShell = true
	}

	// Until the image holds it; a failed import's layer goes with it.
	lease, err := b.store.NewLease()
	if err != nil {
		b.store.Remove(ctx, key)
		return ImportResult{}, err
	}
	defer lease.Release()
	c, err := b.store.Commit(ctx, key, snapshot.WithLease(lease))
	if err != nil {
		return ImportResult{}, fmt.Errorf("storing %s: %w", opts.Source, err)
	}
	if c.Empty {
		return ImportResult{}, fmt.Errorf("%s holds no files", opts.Source)
	}

	now := time.Now().UTC()
	var cfg dockerspec.DockerOCIImage
	cfg.Created = &now
	cfg.Platform = ocispec.Platform{OS: "linux", Architecture: goruntime.GOARCH}
	cfg.Config.Env = []string{"PATH=" + defaultPath}
	cfg.History = []ocispec.History{{Created: &now, CreatedBy: "stepexec import " + opts.Source, Comment: "stepexec"}}
	// The official images of shell-bearing distributions default to a shell.
	if hasShell {
		cfg.Config.Cmd = []string{"/bin/sh"}
	}
	img, err := b.images.Put(cfg, []image.Layer{{ID: c.Layer.ID, DiffID: c.Layer.DiffID, Size: c.Layer.Size}}, normalized)
	if err != nil {
		return ImportResult{}, err
	}
	return ImportResult{Image: img, Layer: c.Layer, Stats: stats}, nil
}

func randomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// cancelableReader reads r in a goroutine of its own, so that a read
// blocked on a pipe or a socket (stdin from a stalled producer) does not
// keep the import from seeing ctx cancelled: the reader returns ctx's error
// at once, and the stuck read is abandoned. stop ends the copying once the
// reader is no longer needed.
func cancelableReader(ctx context.Context, r io.Reader) (io.Reader, func()) {
	pr, pw := io.Pipe()
	go func() {
		_, err := io.Copy(pw, r)
		pw.CloseWithError(err)
	}()
	unregister := context.AfterFunc(ctx, func() { pr.CloseWithError(ctx.Err()) })
	return pr, func() {
		unregister()
		pr.Close()
	}
}

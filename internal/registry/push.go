package registry

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/archive"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/compression"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/storage"
)

// PushOptions says how layers are sent.
type PushOptions struct {
	// Compression is "gzip" (the default, parallel pgzip) or "zstd".
	// With gzip, a layer the registry (or the blob info cache) knows in
	// some compression is reused as it is; zstd is always applied to
	// every layer: otherwise the gzip variants of layers pushed before
	// would stand in for them.
	Compression string
	// ForceCompression recompresses even layers the registry already
	// has in another compression (buildx's force-compression).
	ForceCompression bool
}

// Pushed is what a push wrote.
type Pushed struct {
	Name   string        // the destination
	Digest digest.Digest // the manifest's
}

// compressionOf maps an --output compression= value to the library's.
func compressionOf(name string) (*compression.Algorithm, error) {
	switch name {
	case "", "gzip":
		return &compression.Gzip, nil
	case "zstd":
		return &compression.Zstd, nil
	}
	return nil, fmt.Errorf("compression %q: want gzip or zstd", name)
}

// Push sends image imageID of store to dest. Blobs the registry has
// (in this repository, or mountable from another it knows) are not
// uploaded again.
func (c *Client) Push(ctx context.Context, store storage.Store, imageID string, dest reference.Named, opts PushOptions) (Pushed, error) {
	algo, err := compressionOf(opts.Compression)
	if err != nil {
		return Pushed{}, err
	}
	src, err := istorage.Transport.NewStoreReference(store, nil, imageID)
	if err != nil {
		return Pushed{}, fmt.Errorf("image %s: %w", imageID, err)
	}
	dst, err := docker.NewReference(dest)
	if err != nil {
		return Pushed{}, fmt.Errorf("%s: %w", dest, err)
	}
	sys := c.systemContext()
	allowLoopbackHTTP(ctx, sys, dest, true)
	if err := c.setCredentials(sys, dest, []string{reference.Domain(dest)}); err != nil {
		return Pushed{}, err
	}
	sys.CompressionFormat = algo
	raw, err := c.copyImage(ctx, dst, src, &copy.Options{
		SourceCtx:              c.systemContext(),
		DestinationCtx:         sys,
		ReportWriter:           c.opts.Report,
		ForceCompressionFormat: opts.ForceCompression || algo.Name() != compression.Gzip.Name(),
	})
	if err != nil {
		return Pushed{}, explain(err, dest.String(), c.opts.AnswerTimeout)
	}
	d, err := manifest.Digest(raw)
	if err != nil {
		return Pushed{}, fmt.Errorf("%s: digest of the pushed manifest: %w", dest, err)
	}
	return Pushed{Name: dest.String(), Digest: d}, nil
}

// SaveDockerArchive writes image imageID as a docker save archive at
// path (loadable with docker or podman load), tagged name when it is not
// "". The archive appears complete or not at all.
func (c *Client) SaveDockerArchive(ctx context.Context, store storage.Store, imageID, path, name string) error {
	var tagged reference.NamedTagged
	if name != "" {
		named, err := reference.ParseNormalizedNamed(name)
		if err != nil {
			return fmt.Errorf("output %s: name %q: %w", path, name, err)
		}
		var ok bool
		if tagged, ok = reference.TagNameOnly(named).(reference.NamedTagged); !ok {
			return fmt.Errorf("output %s: name %q: a docker archive names a tag, not a digest", path, name)
		}
	}
	src, err := istorage.Transport.NewStoreReference(store, nil, imageID)
	if err != nil {
		return fmt.Errorf("image %s: %w", imageID, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".stepexec-docker-*.tar")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	dst, err := archive.NewReference(tmp.Name(), tagged)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	sys := c.systemContext()
	if _, err := c.copyImage(ctx, dst, src, &copy.Options{SourceCtx: sys, DestinationCtx: sys}); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

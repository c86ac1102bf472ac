package stepexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/internal/registry"
	"github.com/stepexec/stepexec/rootfs"
	"github.com/stepexec/stepexec/runtime/userns"
	"github.com/stepexec/stepexec/snapshot"
)

// PushOptions says how an image is pushed.
type PushOptions struct {
	RegistryOptions
	// Compression of the layers sent: "gzip" (default) or "zstd".
	Compression string
	// ForceCompression recompresses layers the registry has in another
	// compression.
	ForceCompression bool
}

// Pushed is an image in a registry.
type Pushed struct {
	Name   string        // where it went
	Digest digest.Digest // its manifest's digest
}

// Push sends the stored image ref to dest (default: the name ref matched,
// which must name a registry). Blobs the registry has are not sent again.
func (b *Builder) Push(ctx context.Context, ref, dest string, opts PushOptions) (Pushed, error) {
	lease, err := b.store.NewLease()
	if err != nil {
		return Pushed{}, err
	}
	defer lease.Release()
	var img image.Image
	var name string
	if _, err := lease.Hold(func() (string, error) {
		var err error
		img, name, err = localImage(b.images, ref)
		return img.TopLayer, err
	}); err != nil {
		return Pushed{}, err
	}
	if dest == "" {
		if dest = name; dest == "" {
			return Pushed{}, fmt.Errorf("%s is an image ID: give the destination, e.g. `stepexec push %s registry.example.com/app:1.0`", ref, ref)
		}
	}
	return b.push(ctx, img, dest, opts, lease)
}

// push sends img to dest.
func (b *Builder) push(ctx context.Context, img image.Image, dest string, opts PushOptions, lease *snapshot.Lease) (Pushed, error) {
	named, err := registry.ParseDestination(dest)
	if err != nil {
		return Pushed{}, err
	}
	c, err := b.client(opts.RegistryOptions)
	if err != nil {
		return Pushed{}, err
	}
	p, err := c.Push(ctx, b.store.ForTransfer(lease), img.ID, named,
		registry.PushOptions{Compression: opts.Compression, ForceCompression: opts.ForceCompression})
	if err != nil {
		return Pushed{}, fmt.Errorf("pushing %s: %w", dest, err)
	}
	return Pushed{Name: p.Name, Digest: p.Digest}, nil
}

// export writes img to each output, then, with push, sends it to each of
// names (docker build --push).
func (b *Builder) export(ctx context.Context, img image.Image, names []string, opts BuildOptions, lease *snapshot.Lease, progress Progress) error {
	for _, out := range opts.Outputs {
		if err := b.exportOne(ctx, img, names, out, opts.Registry, lease, progress); err != nil {
			return err
		}
	}
	if opts.Push {
		for _, n := range names {
			if err := b.pushReported(ctx, img, n, PushOptions{RegistryOptions: opts.Registry}, lease, progress); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *Builder) exportOne(ctx context.Context, img image.Image, names []string, out Output, reg RegistryOptions, lease *snapshot.Lease, progress Progress) error {
	name := ""
	if len(out.Names) > 0 {
		name = out.Names[0]
	} else if len(names) > 0 {
		name = names[0]
	}
	var err error
	var manifest digest.Digest
	switch out.Type {
	case "oci":
		manifest, err = b.exportOCI(ctx, img, out.Dest, name)
	case "docker":
		var c *registry.Client
		if c, err = b.client(reg); err == nil {
			err = c.SaveDockerArchive(ctx, b.store.ForTransfer(lease), img.ID, out.Dest, name)
		}
	case "local", "tar":
		err = b.exportTree(ctx, img, out)
	case "image", "registry":
		return b.exportImage(ctx, img, out, reg, lease, progress)
	default:
		err = fmt.Errorf("--output type=%q is not supported", out.Type)
	}
	if err != nil {
		return err
	}
	e := Event{Kind: OutputWritten, Name: out.Dest, Text: out.Type}
	if manifest != "" {
		e.Digest = manifest.String()
	}
	progress.Event(e)
	return nil
}

func (b *Builder) exportOCI(ctx context.Context, img image.Image, dest, name string) (digest.Digest, error) {
	layers, err := b.images.Layers(img)
	if err != nil {
		return "", err
	}
	return image.WriteOCI(ctx, img, layers, b.store, image.OCIOutput{Dest: dest, Name: name})
}

// exportImage names img in the store (type=image) and pushes it.
func (b *Builder) exportImage(ctx context.Context, img image.Image, out Output, reg RegistryOptions, lease *snapshot.Lease, progress Progress) error {
	if out.Type == "image" {
		names, err := normalizeTags(out.Names)
		if err != nil {
			return fmt.Errorf("--output type=image: %w", err)
		}
		if err := b.images.Tag(img, names); err != nil {
			return err
		}
		for _, n := range names {
			progress.Event(Event{Kind: ImageNamed, Name: n})
		}
	}
	if !out.pushes() {
		return nil
	}
	for _, n := range out.Names {
		opts := PushOptions{RegistryOptions: reg, Compression: out.Compression, ForceCompression: out.ForceCompression}
		if err := b.pushReported(ctx, img, n, opts, lease, progress); err != nil {
			return err
		}
	}
	return nil
}

func (b *Builder) pushReported(ctx context.Context, img image.Image, dest string, opts PushOptions, lease *snapshot.Lease, progress Progress) error {
	start := time.Now()
	p, err := b.push(ctx, img, dest, opts, lease)
	if err != nil {
		return err
	}
	progress.Event(Event{Kind: ImagePushed, Name: p.Name, Digest: p.Digest.String(), Duration: time.Since(start)})
	return nil
}

// exportTree writes img's flattened root filesystem (as buildx's local
// and tar exporters): the tree a container of it starts on, read through
// a read-only view of its layers.
func (b *Builder) exportTree(ctx context.Context, img image.Image, out Output) (err error) {
	key := "export-" + randomID()
	view, err := b.store.View(ctx, key, img.TopLayer)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, b.store.Remove(ctx, key)) }()
	if out.Type == "tar" {
		return writeTreeTar(ctx, view.Dir, out.Dest)
	}
	return writeTreeDir(ctx, view.Dir, out.Dest)
}

// wholeTree selects every entry of a tree for snapshot.WriteTreeTar.
type wholeTree struct{}

func (wholeTree) Pick(string) (bool, bool) { return true, false }
func (wholeTree) Deleted(string) []string  { return nil }

// writeTreeTar writes tree as a tar file at dest, renamed into place
// once complete.
func writeTreeTar(ctx context.Context, tree, dest string) error {
	f, err := os.CreateTemp(filepath.Dir(dest), ".stepexec-tar-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", dest, err)
	}
	defer os.Remove(f.Name())
	_, _, err = snapshot.WriteTreeTar(ctx, f, tree, wholeTree{})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), dest)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", dest, err)
	}
	return nil
}

// writeTreeDir copies tree into the new or empty directory dest. As real
// root files keep their owners; rootless they are the user's own (as
// buildx's client writes them), so the user can remove them.
func writeTreeDir(ctx context.Context, tree, dest string) (err error) {
	created := false
	if _, serr := os.Lstat(dest); errors.Is(serr, fs.ErrNotExist) {
		if err := os.Mkdir(dest, 0o755); err != nil {
			return fmt.Errorf("writing %s: %w", dest, err)
		}
		created = true
	}
	defer func() {
		if err != nil {
			cleanDir(dest, created)
		}
	}()
	var opts []rootfs.UnpackOption
	if userns.InUserNamespace() {
		opts = append(opts, rootfs.SquashOwners())
	}
	pr, pw := io.Pipe()
	go func() {
		_, _, err := snapshot.WriteTreeTar(ctx, pw, tree, wholeTree{})
		pw.CloseWithError(err)
	}()
	_, err = rootfs.Unpack(ctx, pr, dest, opts...)
	pr.CloseWithError(err)
	if err != nil {
		return fmt.Errorf("writing %s: %w", dest, err)
	}
	return nil
}

// cleanDir removes what a failed export wrote: dest itself when it made
// it, else the entries it put in the (empty) directory.
func cleanDir(dest string, created bool) {
	if created {
		os.RemoveAll(dest)
		return
	}
	entries, _ := os.ReadDir(dest)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dest, e.Name()))
	}
}

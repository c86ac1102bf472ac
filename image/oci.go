package image

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/pgzip"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/ctxio"
	"github.com/stepexec/stepexec/internal/safefile"
)

// LayerReader yields a committed layer's uncompressed tar.
type LayerReader interface {
	Diff(ctx context.Context, layerID string) (io.ReadCloser, error)
}

// OCIOutput says where and under which name an image is exported.
type OCIOutput struct {
	// Dest is an OCI image layout directory (created, or added to if it is
	// one already), or, when it ends in ".tar", an archive of one.
	Dest string
	// Name is the full reference annotated on the index entry (BuildKit's
	// io.containerd.image.name); its tag becomes org.opencontainers.image.ref.name.
	Name string
}

// CheckOutput tells, before a build spends any time, whether WriteOCI
// could write to out.Dest: its parent directory must exist and be writable,
// and an existing directory must be empty or an OCI layout.
func CheckOutput(out OCIOutput) error {
	parent := filepath.Dir(out.Dest)
	if err := checkDir(parent); err != nil {
		return fmt.Errorf("output %s: %w", out.Dest, err)
	}
	if err := unix.Access(parent, unix.W_OK); err != nil {
		return fmt.Errorf("output %s: cannot write in %s: %w", out.Dest, parent, err)
	}
	// Stat before reading it: os.ReadDir would open a FIFO and block.
	st, err := os.Stat(out.Dest)
	if strings.HasSuffix(out.Dest, ".tar") {
		if err == nil && st.IsDir() {
			return fmt.Errorf("output %s is a directory, not an archive", out.Dest)
		}
		return nil
	}
	if err == nil && !st.IsDir() {
		return fmt.Errorf("output %s is %s, not a directory (an OCI layout is a directory; a dest ending in .tar is an archive)", out.Dest, kind(st))
	}
	entries, err := os.ReadDir(out.Dest)
	if err == nil && len(entries) > 0 {
		if _, err := layout.FromPath(out.Dest); err != nil {
			return fmt.Errorf("output %s exists and is not an OCI image layout (no index.json): choose another dest", out.Dest)
		}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("output %s: %w", out.Dest, err)
	}
	return nil
}

// checkDir says what is wrong when dir is not an existing directory,
// naming the component that is missing or not a directory.
func checkDir(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case err == nil && st.IsDir():
		return nil
	case err == nil:
		return fmt.Errorf("%s is %s, not a directory", dir, kind(st))
	case errors.Is(err, unix.ENOTDIR):
		// Some ancestor is not a directory: name it.
		for p := filepath.Dir(dir); p != dir; dir, p = p, filepath.Dir(p) {
			if st, err := os.Stat(p); err == nil {
				if st.IsDir() {
					break
				}
				return fmt.Errorf("%s is %s, not a directory", p, kind(st))
			}
		}
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("directory %s does not exist", dir)
	}
	return fmt.Errorf("directory %s: %w", dir, err)
}

// kind names what a non-directory is: "a file", "a named pipe (FIFO)", ….
func kind(st fs.FileInfo) string {
	if st.Mode().IsRegular() {
		return "a file"
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return safefile.Kind(sys.Mode)
	}
	return "not a directory"
}

// WriteOCI exports img, whose layers are read from src, with gzip-compressed
// layers, and returns the digest of the manifest it wrote. Nothing is left
// behind on failure: a directory it created is removed, and an archive is
// only renamed into place once complete.
func WriteOCI(ctx context.Context, img Image, layers []Layer, src LayerReader, out OCIOutput) (digest.Digest, error) {
	if strings.HasSuffix(out.Dest, ".tar") {
		return writeOCIArchive(ctx, img, layers, src, out)
	}
	return writeOCIDir(ctx, img, layers, src, out)
}

func writeOCIArchive(ctx context.Context, img Image, layers []Layer, src LayerReader, out OCIOutput) (digest.Digest, error) {
	parent := filepath.Dir(out.Dest)
	tmp, err := os.MkdirTemp(parent, ".stepexec-oci-")
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", out.Dest, err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "layout")
	d, err := writeOCIDir(ctx, img, layers, src, OCIOutput{Dest: dir, Name: out.Name})
	if err != nil {
		return "", err
	}
	partial := filepath.Join(tmp, "archive.tar")
	if err := tarDir(dir, partial); err != nil {
		return "", fmt.Errorf("writing %s: %w", out.Dest, err)
	}
	if err := os.Rename(partial, out.Dest); err != nil {
		return "", fmt.Errorf("writing %s: %w", out.Dest, err)
	}
	return d, nil
}

func writeOCIDir(ctx context.Context, img Image, layers []Layer, src LayerReader, out OCIOutput) (_ digest.Digest, err error) {
	path, created, err := openLayout(out.Dest)
	if err != nil {
		return "", err
	}
	var written []string
	defer func() {
		if err == nil {
			return
		}
		if created {
			os.RemoveAll(out.Dest)
			return
		}
		for _, f := range written {
			os.Remove(f)
		}
	}()

	blobs := filepath.Join(out.Dest, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return "", fmt.Errorf("writing %s: %w", out.Dest, err)
	}
	core := &ociImage{rawConfig: img.RawConfig, blobs: blobs, layers: map[v1.Hash]*blobLayer{}}
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageConfig,
			Digest:    digest.FromBytes(img.RawConfig),
			Size:      int64(len(img.RawConfig)),
		},
	}
	for _, l := range layers {
		bl, fresh, err := compressLayer(ctx, src, l, blobs)
		if err != nil {
			return "", fmt.Errorf("exporting layer %s to %s: %w", l.DiffID, out.Dest, err)
		}
		if fresh {
			written = append(written, bl.path)
		}
		core.layers[bl.digest] = bl
		manifest.Layers = append(manifest.Layers, ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageLayerGzip,
			Digest:    digest.Digest(bl.digest.String()),
			Size:      bl.size,
		})
	}
	if core.rawManifest, err = json.Marshal(manifest); err != nil {
		return "", fmt.Errorf("encoding manifest: %w", err)
	}
	v1img, err := partial.CompressedToImage(core)
	if err != nil {
		return "", fmt.Errorf("exporting to %s: %w", out.Dest, err)
	}
	annotations := map[string]string{}
	if out.Name != "" {
		annotations["io.containerd.image.name"] = out.Name
		_, tag := SplitName(out.Name)
		annotations[ocispec.AnnotationRefName] = tag
	}
	opt := layout.WithAnnotations(annotations)
	if ref, ok := annotations[ocispec.AnnotationRefName]; ok {
		err = path.ReplaceImage(v1img, match.Annotation(ocispec.AnnotationRefName, ref), opt)
	} else {
		err = path.AppendImage(v1img, opt)
	}
	if err != nil {
		return "", fmt.Errorf("writing OCI layout %s: %w", out.Dest, err)
	}
	return digest.FromBytes(core.rawManifest), nil
}

// openLayout opens dest as an OCI layout, making one if dest does not exist
// or is an empty directory. Anything else is refused rather than mixed in.
func openLayout(dest string) (layout.Path, bool, error) {
	entries, err := os.ReadDir(dest)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		p, err := layout.Write(dest, empty.Index)
		if err != nil {
			os.RemoveAll(dest)
			return "", false, fmt.Errorf("creating OCI layout %s: %w", dest, err)
		}
		return p, true, nil
	case err != nil:
		return "", false, fmt.Errorf("output %s: %w", dest, err)
	case len(entries) == 0:
		p, err := layout.Write(dest, empty.Index)
		if err != nil {
			return "", false, fmt.Errorf("creating OCI layout %s: %w", dest, err)
		}
		return p, false, nil
	}
	p, err := layout.FromPath(dest)
	if err != nil {
		return "", false, fmt.Errorf("output %s exists and is not an OCI image layout (no index.json): choose another dest", dest)
	}
	return p, false, nil
}

// compressLayer gzips a layer once, straight into the layout's blob dir
// (the layout writer skips blobs that are there already), checking on the
// way that the store's tar still has the recorded diffID.
func compressLayer(ctx context.Context, src LayerReader, l Layer, blobs string) (*blobLayer, bool, error) {
	diff, err := src.Diff(ctx, l.ID)
	if err != nil {
		return nil, false, err
	}
	// containers/storage's Diff closer must run exactly once: it releases
	// the store-wide layer lock.
	var once sync.Once
	closeDiff := func() { once.Do(func() { diff.Close() }) }
	defer closeDiff()
	rc := ctxio.Reader(ctx, diff) // a large layer's export stops on Ctrl-C
	tmp, err := os.CreateTemp(blobs, ".layer-")
	if err != nil {
		return nil, false, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()

	compressed := sha256.New()
	uncompressed := sha256.New()
	counter := &countingWriter{}
	zw := pgzip.NewWriter(io.MultiWriter(tmp, compressed, counter))
	if _, err := io.Copy(io.MultiWriter(zw, uncompressed), rc); err != nil {
		zw.Close()
		return nil, false, err
	}
	if err := zw.Close(); err != nil {
		return nil, false, err
	}
	closeDiff()
	if got := "sha256:" + hex.EncodeToString(uncompressed.Sum(nil)); got != l.DiffID.String() {
		return nil, false, fmt.Errorf("layer %s changed in the store: its tar hashes to %s", l.DiffID, got)
	}
	if err := tmp.Close(); err != nil {
		return nil, false, err
	}
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(compressed.Sum(nil))}
	final := filepath.Join(blobs, h.Hex)
	fresh := true
	if _, err := os.Stat(final); err == nil {
		fresh = false
	} else if err := os.Rename(tmp.Name(), final); err != nil {
		return nil, false, err
	}
	return &blobLayer{digest: h, size: counter.n, path: final}, fresh, nil
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// ociImage is the minimal go-containerregistry image over blobs already
// written into the layout.
type ociImage struct {
	rawConfig   []byte
	rawManifest []byte
	blobs       string
	layers      map[v1.Hash]*blobLayer
}

func (i *ociImage) RawConfigFile() ([]byte, error)      { return i.rawConfig, nil }
func (i *ociImage) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (i *ociImage) RawManifest() ([]byte, error)        { return i.rawManifest, nil }
func (i *ociImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := i.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("no layer %s in this image", h)
}

type blobLayer struct {
	digest v1.Hash
	size   int64
	path   string
}

func (l *blobLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *blobLayer) Size() (int64, error)                { return l.size, nil }
func (l *blobLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }
func (l *blobLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }

// tarDir archives an OCI layout directory, as `docker buildx --output
// type=oci,dest=x.tar` does, with stable order and ownership.
func tarDir(dir, dest string) (err error) {
	f, err := os.Create(dest)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// fakeLayers serves layer tars from memory.
type fakeLayers map[string][]byte

func (f fakeLayers) Diff(_ context.Context, id string) (io.ReadCloser, error) {
	b, ok := f[id]
	if !ok {
		return nil, fmt.Errorf("no layer %s", id)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(content))
	}
	tw.Close()
	return buf.Bytes()
}

// testImage makes an image of two layers whose tars are in the returned reader.
func testImage(t *testing.T) (Image, []Layer, fakeLayers) {
	t.Helper()
	src := fakeLayers{"base": tarOf(t, map[string]string{"a": "base"}), "top": tarOf(t, map[string]string{"b": "top"})}
	var layers []Layer
	var cfg dockerspec.DockerOCIImage
	cfg.Platform = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	cfg.Config.Cmd = []string{"cat", "/b"}
	cfg.RootFS = ocispec.RootFS{Type: "layers"}
	for _, id := range []string{"base", "top"} {
		d := digest.FromBytes(src[id])
		layers = append(layers, Layer{ID: id, DiffID: d, Size: int64(len(src[id]))})
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, d)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return Image{ID: digest.FromBytes(raw).Encoded(), Config: cfg, RawConfig: raw}, layers, src
}

func TestWriteOCIDirectoryRoundTrip(t *testing.T) {
	img, layers, src := testImage(t)
	dest := filepath.Join(t.TempDir(), "out")
	written, err := WriteOCI(context.Background(), img, layers, src, OCIOutput{Dest: dest, Name: "localhost/app:v1"})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := layout.ImageIndexFromPath(dest)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := idx.IndexManifest()
	if len(m.Manifests) != 1 || m.Manifests[0].Annotations[ocispec.AnnotationRefName] != "v1" ||
		m.Manifests[0].Annotations["io.containerd.image.name"] != "localhost/app:v1" {
		t.Fatalf("index = %+v", m.Manifests)
	}
	if m.Manifests[0].Digest.String() != written.String() {
		t.Errorf("WriteOCI returned manifest digest %s, the index names %s", written, m.Manifests[0].Digest)
	}
	got, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := got.RawConfigFile()
	if !bytes.Equal(raw, img.RawConfig) {
		t.Errorf("exported config differs from the stored one:\n%s\n%s", raw, img.RawConfig)
	}
	ls, _ := got.Layers()
	for i, l := range ls {
		mt, _ := l.MediaType()
		if string(mt) != ocispec.MediaTypeImageLayerGzip {
			t.Errorf("layer %d media type %s", i, mt)
		}
		rc, _ := l.Uncompressed()
		b, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(b, src[layers[i].ID]) {
			t.Errorf("layer %d does not round-trip", i)
		}
	}

	// A second export of the same name into the same layout replaces it.
	if _, err := WriteOCI(context.Background(), img, layers, src, OCIOutput{Dest: dest, Name: "localhost/app:v1"}); err != nil {
		t.Fatal(err)
	}
	idx, err = layout.ImageIndexFromPath(dest)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ = idx.IndexManifest(); len(m.Manifests) != 1 {
		t.Errorf("re-export added a manifest instead of replacing: %d", len(m.Manifests))
	}
	if _, err := exec.LookPath("skopeo"); err == nil {
		if out, err := exec.Command("skopeo", "inspect", "oci:"+dest+":v1").CombinedOutput(); err != nil {
			t.Errorf("skopeo inspect: %v\n%s", err, out)
		}
	}
}

func TestWriteOCIArchive(t *testing.T) {
	img, layers, src := testImage(t)
	dir := t.TempDir()
	dest := filepath.Join(dir, "img.tar")
	if _, err := WriteOCI(context.Background(), img, layers, src, OCIOutput{Dest: dest}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	names := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = true
	}
	for _, want := range []string{"oci-layout", "index.json", "blobs/sha256/" + img.ID} {
		if !names[want] {
			t.Errorf("archive lacks %s: %v", want, names)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temp files left beside the archive: %v", entries)
	}
}

func TestWriteOCIFailuresLeaveNothing(t *testing.T) {
	img, layers, src := testImage(t)
	ctx := context.Background()

	// A layer that cannot be read: the new layout is removed.
	dest := filepath.Join(t.TempDir(), "out")
	broken := fakeLayers{"base": src["base"]}
	if _, err := WriteOCI(ctx, img, layers, broken, OCIOutput{Dest: dest}); err == nil {
		t.Fatal("export of an unreadable layer succeeded")
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed export left %s", dest)
	}

	// A layer whose content no longer matches its diffID is refused.
	tampered := fakeLayers{"base": src["base"], "top": tarOf(t, map[string]string{"b": "changed"})}
	_, err := WriteOCI(ctx, img, layers, tampered, OCIOutput{Dest: dest})
	if err == nil || !strings.Contains(err.Error(), "changed in the store") {
		t.Errorf("tampered layer: err = %v", err)
	}

	// An archive export that fails leaves no archive and no temp dir.
	dir := t.TempDir()
	if _, err := WriteOCI(ctx, img, layers, broken, OCIOutput{Dest: filepath.Join(dir, "x.tar")}); err == nil {
		t.Fatal("archive export of an unreadable layer succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed archive export left %v", entries)
	}

	// A directory that is not a layout is not written into.
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "notes.txt"), []byte("mine"), 0o644)
	_, err = WriteOCI(ctx, img, layers, src, OCIOutput{Dest: other})
	if err == nil || !strings.Contains(err.Error(), "not an OCI image layout") {
		t.Errorf("export into a non-layout dir: err = %v", err)
	}
	if entries, _ := os.ReadDir(other); len(entries) != 1 {
		t.Errorf("export touched a non-layout dir: %v", entries)
	}
}

func TestCheckOutput(t *testing.T) {
	dir := t.TempDir()
	layoutDir := filepath.Join(dir, "layout")
	img, layers, src := testImage(t)
	if _, err := WriteOCI(context.Background(), img, layers, src, OCIOutput{Dest: layoutDir}); err != nil {
		t.Fatal(err)
	}
	notLayout := filepath.Join(dir, "other")
	os.MkdirAll(notLayout, 0o755)
	os.WriteFile(filepath.Join(notLayout, "f"), nil, 0o644)
	cases := []struct{ dest, err string }{
		{dest: filepath.Join(dir, "new")},
		{dest: filepath.Join(dir, "new.tar")},
		{dest: layoutDir},
		{dest: filepath.Join(dir, "missing", "x"), err: "does not exist"},
		{dest: notLayout, err: "not an OCI image layout"},
		{dest: notLayout + "/../other.tar"},
		{dest: filepath.Join(dir, "d.tar"), err: "is a directory"},
		{dest: filepath.Join(dir, "file", "sub"), err: filepath.Join(dir, "file") + " is a file, not a directory"},
		{dest: filepath.Join(dir, "file", "sub", "deeper"), err: filepath.Join(dir, "file") + " is a file, not a directory"},
		{dest: filepath.Join(dir, "file"), err: filepath.Join(dir, "file") + " is a file, not a directory (an OCI layout is a directory"},
		{dest: filepath.Join(dir, "fifo"), err: filepath.Join(dir, "fifo") + " is a named pipe (FIFO), not a directory"},
		{dest: filepath.Join(dir, "fifo", "x"), err: filepath.Join(dir, "fifo") + " is a named pipe (FIFO), not a directory"},
	}
	os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o644)
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "d.tar"), 0o755)
	for _, c := range cases {
		err := checkOutputOrHang(t, OCIOutput{Dest: c.dest})
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("CheckOutput(%s) = %v, want %q", c.dest, err, c.err)
		}
	}
}

// checkOutputOrHang runs CheckOutput, failing the test if it blocks (on a
// FIFO, say).
func checkOutputOrHang(t *testing.T, out OCIOutput) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- CheckOutput(out) }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("CheckOutput(%s) blocked", out.Dest)
		return nil
	}
}

package image_test

import (
	"context"
	"errors"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage/pkg/reexec"

	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/runtime/userns"
	"github.com/stepexec/stepexec/snapshot"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	// The store needs uid 0: rootless, run the tests in the user namespace.
	if err := userns.Enter(userns.SubIDs); err != nil {
		if os.Getenv("STEPEXEC_REQUIRE_ALL") == "1" {
			panic(err)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// newStore opens a throw-away store and commits a chain of layers, each
// adding one file, in a lease: release it once images hold the layers.
func newStore(t *testing.T, files ...string) (*snapshot.Store, []image.Layer, *snapshot.Lease) {
	t.Helper()
	dir := t.TempDir()
	s, err := snapshot.Open(snapshot.Options{Root: filepath.Join(dir, "root"), RunRoot: filepath.Join(dir, "run")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	lease, err := s.NewLease()
	if err != nil {
		t.Fatal(err)
	}
	var layers []image.Layer
	parent := ""
	for i, f := range files {
		key := "k" + string(rune('a'+i))
		snap, err := s.Prepare(context.Background(), key, parent)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(snap.Dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := s.Commit(context.Background(), key, snapshot.WithLease(lease))
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, image.Layer{ID: c.Layer.ID, DiffID: c.Layer.DiffID, Size: c.Layer.Size})
		parent = c.Layer.ID
	}
	return s, layers, lease
}

func config(cmd string) dockerspec.DockerOCIImage {
	var c dockerspec.DockerOCIImage
	c.Platform = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	c.Config.Cmd = []string{cmd}
	return c
}

func TestPutGetListRemove(t *testing.T) {
	s, layers, lease := newStore(t, "a", "b")
	st := image.NewStore(s.ImageRecords(), s)
	defer lease.Release()

	base, err := st.Put(config("base"), layers[:1], []string{"localhost/base:latest"})
	if err != nil {
		t.Fatal(err)
	}
	app, err := st.Put(config("app"), layers, []string{"localhost/app:latest", "localhost/app:v1"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := lease.Release(); err != nil || len(got.Layers) > 0 {
		t.Fatalf("releasing the layers images hold deleted %+v, %v", got, err)
	}
	if got := app.Config.RootFS.DiffIDs; len(got) != 2 || got[1] != layers[1].DiffID {
		t.Errorf("rootfs diff_ids = %v", got)
	}
	if app.Size != layers[0].Size+layers[1].Size {
		t.Errorf("size %d, want %d", app.Size, layers[0].Size+layers[1].Size)
	}

	for _, ref := range []string{"app", "app:v1", "localhost/app", app.ID, app.ID[:12], "sha256:" + app.ID} {
		got, err := st.Get(ref)
		if err != nil || got.ID != app.ID {
			t.Errorf("Get(%q) = %s, %v; want %s", ref, got.ID, err, app.ID)
		}
	}
	if _, err := st.Get("nothere"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("Get(nothere) err = %v", err)
	}
	gotLayers, err := st.Layers(app)
	if err != nil || len(gotLayers) != 2 || gotLayers[0].ID != layers[0].ID || gotLayers[1].DiffID != layers[1].DiffID {
		t.Errorf("Layers = %+v, %v", gotLayers, err)
	}

	// Putting the same image again only adds names; a name moves from the
	// image that had it, as docker build -t does.
	again, err := st.Put(config("app"), layers, []string{"localhost/base:latest"})
	if err != nil || again.ID != app.ID {
		t.Fatalf("re-put: %v, %v", again.ID, err)
	}
	if b, _ := st.Get(base.ID); len(b.Names) != 0 {
		t.Errorf("base kept its moved name: %v", b.Names)
	}
	list, err := st.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %d images, %v", len(list), err)
	}

	// Removing one of several names untags; the last name deletes the image
	// and the layer only it used, not the shared one.
	done, err := st.Remove("app:v1")
	if err != nil || strings.Join(done.Untagged, ";") != "localhost/app:v1" || done.Deleted != "" {
		t.Errorf("Remove(app:v1) = %+v, %v", done, err)
	}
	st.Remove("app")
	done, err = st.Remove("base:latest")
	if err != nil || done.Deleted != app.ID || done.Kept != "" {
		t.Errorf("Remove(base) = %+v, %v", done, err)
	}
	if _, err := s.Layer(layers[1].ID); err == nil {
		t.Error("the deleted image's own layer is still in the store")
	}
	if _, err := s.Layer(layers[0].ID); err != nil {
		t.Error("the layer the unnamed base image still uses was deleted")
	}
}

// TestRemoveKeepsWhatABuildStandsOn removes an image while a build holds
// its top layer (as a build's FROM does): it loses its name but stays,
// layers and all, until the build is done.
func TestRemoveKeepsWhatABuildStandsOn(t *testing.T) {
	s, layers, lease := newStore(t, "a")
	st := image.NewStore(s.ImageRecords(), s)
	img, err := st.Put(config("base"), layers, []string{"localhost/base:latest"})
	if err != nil {
		t.Fatal(err)
	}
	lease.Release()
	build, err := s.NewLease()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := build.Hold(func() (string, error) { return img.TopLayer, nil }); err != nil {
		t.Fatal(err)
	}
	done, err := st.Remove("base")
	if err != nil || done.Kept != img.ID || done.Deleted != "" || strings.Join(done.Untagged, ";") != "localhost/base:latest" {
		t.Fatalf("Remove(base) during a build = %+v, %v", done, err)
	}
	if _, err := st.Get("base"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("the name survived: %v", err)
	}
	if got, err := st.Get(img.ID); err != nil || len(got.Names) != 0 {
		t.Errorf("the kept image: %+v, %v", got, err)
	}
	if _, err := build.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(img.ID); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("the image outlived the build: %v", err)
	}
	if _, err := s.Layer(layers[0].ID); err == nil {
		t.Error("its layer outlived the build")
	}
}

func TestMadeFlagIsSnapshots(t *testing.T) {
	if image.MadeFlag != snapshot.MadeFlag {
		t.Errorf("image.MadeFlag %q != snapshot.MadeFlag %q: prune --all would not find stepexec's images", image.MadeFlag, snapshot.MadeFlag)
	}
}

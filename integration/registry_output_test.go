package integration

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestOutputsDockerLocalTarImageRegistry: one build exports a docker
// archive podman loads, the flattened root filesystem as a directory and
// as a tar (deleted files absent), names the image and pushes it
// (type=image,push=true), and pushes a zstd copy (type=registry) that an
// empty store pulls.
func TestOutputsDockerLocalTarImageRegistry(t *testing.T) {
	reg := startRegistry(t, registryOptions{})
	forEachAccount(t, func(t *testing.T, a *account) {
		a = a.ownHome(t)
		a.importAlpine(t)
		ns := reg.Host + "/" + a.name
		dir := a.writeContext(t, "outputs", "FROM alpine\nRUN mkdir /out && echo hi > /out/hi && ln -s hi /out/link && rm /etc/motd\n")
		w := a.userDir(t, filepath.Join(a.work, "exports"))
		id := strings.TrimSpace(a.mustRun(t, "build", "-q", "-t", "outputs",
			"-o", "type=docker,dest="+w+"/img.tar",
			"-o", "type=local,dest="+w+"/rootfs",
			"-o", "type=tar,dest="+w+"/rootfs.tar",
			"-o", "type=image,name="+ns+"/named:1,push=true",
			"-o", "type=registry,name="+ns+"/zstd:1,compression=zstd",
			dir).stdout)

		if r := a.podman(t, "load", "-q", "-i", w+"/img.tar"); r.code != 0 || !strings.Contains(r.stdout, "outputs") {
			t.Errorf("podman load of the docker archive: %s", r)
		}
		if r := a.podman(t, "images", "-q", "--no-trunc"); !strings.Contains(r.stdout, id) {
			t.Errorf("podman load gave images %q, want %s", r.stdout, id)
		}

		if got, err := os.ReadFile(filepath.Join(w, "rootfs", "out", "hi")); err != nil || string(got) != "hi\n" {
			t.Errorf("type=local: out/hi = %q, %v", got, err)
		}
		if target, err := os.Readlink(filepath.Join(w, "rootfs", "out", "link")); err != nil || target != "hi" {
			t.Errorf("type=local: out/link -> %q, %v", target, err)
		}
		if _, err := os.Lstat(filepath.Join(w, "rootfs", "etc", "motd")); err == nil {
			t.Errorf("type=local: etc/motd was deleted by the RUN but is there")
		}
		var st syscall.Stat_t
		wantUID := uint32(0)
		if a.rootless() {
			wantUID = uint32(a.uid) // the user's own, as buildx writes them
		}
		if err := syscall.Lstat(filepath.Join(w, "rootfs", "etc", "passwd"), &st); err != nil || st.Uid != wantUID {
			t.Errorf("type=local: etc/passwd owned by %d (%v), want %d", st.Uid, err, wantUID)
		}

		names := tarNames(t, filepath.Join(w, "rootfs.tar"))
		if !slices.Contains(names, "out/hi") || !slices.Contains(names, "bin/busybox") || slices.Contains(names, "etc/motd") {
			t.Errorf("type=tar holds %d entries; want out/hi and bin/busybox, not etc/motd", len(names))
		}

		a.imageLayers(t, ns+"/named:1")
		if m, _ := rawManifest(t, a, ns+"/named:1"); m.Config.Digest.String() != id {
			t.Errorf("type=image,push=true pushed config %s, want %s", m.Config.Digest, id)
		}
		m, _ := rawManifest(t, a, ns+"/zstd:1")
		for _, l := range m.Layers {
			if l.MediaType != "application/vnd.oci.image.layer.v1.tar+zstd" {
				t.Errorf("compression=zstd pushed a layer of type %s", l.MediaType)
			}
		}
		empty := a.otherStore("zstd")
		if got := strings.TrimSpace(empty.mustRun(t, "pull", ns+"/zstd:1").stdout); got != id {
			t.Errorf("pull of the zstd push gave %s, want %s", got, id)
		}

		// A local dest that holds files is refused before the build runs.
		a.writeUserFile(t, filepath.Join(w, "full", "keep"), "mine")
		r := a.run(t, "build", "-o", "type=local,dest="+w+"/full", dir)
		if r.code == 0 || !strings.Contains(r.stderr, w+"/full is not empty") {
			t.Errorf("type=local into a non-empty directory: %s", r)
		}
	})
}

func tarNames(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		names = append(names, strings.TrimSuffix(hdr.Name, "/"))
	}
}

// TestPullPicksLinuxAmd64FromIndex: from a multi-platform index (an
// arm64 image listed first), the pull stores the linux/amd64 image.
func TestPullPicksLinuxAmd64FromIndex(t *testing.T) {
	reg := startRegistry(t, registryOptions{})
	forEachAccount(t, func(t *testing.T, a *account) {
		a = a.ownHome(t)
		amd := buildAndPush(t, a, reg.Host+"/"+a.name+"/single:1", "amd")
		ref, err := name.ParseReference(amd.ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		amdImg, err := remote.Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := amdImg.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cfg = cfg.DeepCopy()
		cfg.Architecture = "arm64"
		armImg, err := mutate.ConfigFile(amdImg, cfg)
		if err != nil {
			t.Fatal(err)
		}
		idx := mutate.AppendManifests(empty.Index,
			mutate.IndexAddendum{Add: armImg, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
			mutate.IndexAddendum{Add: amdImg, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
		multi, err := name.ParseReference(reg.Host+"/"+a.name+"/multi:1", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteIndex(multi, idx); err != nil {
			t.Fatalf("pushing the index: %v", err)
		}
		s := a.otherStore("multi")
		if got := strings.TrimSpace(s.mustRun(t, "pull", multi.String()).stdout); got != amd.id {
			t.Errorf("pull of a multi-platform index gave %s, want the amd64 image %s", got, amd.id)
		}
		s.assertClean(t)
	})
}

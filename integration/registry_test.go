package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/stepexec/stepexec/internal/testenv"
)

// pushedImage is an image a test built and pushed.
type pushedImage struct {
	ref    string // where it is
	id     string // image ID, sha256:…
	digest string // manifest digest
}

// buildAndPush builds a two-layer image (Alpine plus a RUN writing
// /name.txt) as ref in a's store and pushes it.
func buildAndPush(t *testing.T, a *account, ref, name string, extra ...string) pushedImage {
	t.Helper()
	a.importAlpine(t)
	dir := a.writeContext(t, "ctx-"+name, "FROM alpine\nRUN echo "+name+" > /"+name+".txt\n")
	id := strings.TrimSpace(a.mustRun(t, "build", "-q", "-t", ref, dir).stdout)
	args := append([]string{"push", "-q"}, extra...)
	digest := strings.TrimSpace(a.mustRun(t, append(args, ref)...).stdout)
	return pushedImage{ref: ref, id: id, digest: digest}
}

// rawManifest is the manifest skopeo reads from the registry.
func rawManifest(t *testing.T, a *account, ref string) (ocispec.Manifest, string) {
	t.Helper()
	raw := a.skopeo(t, "inspect", "--raw", "--tls-verify=false", "docker://"+ref)
	var m ocispec.Manifest
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("manifest of %s: %v\n%s", ref, err, raw)
	}
	sum := sha256.Sum256([]byte(raw))
	return m, "sha256:" + hex.EncodeToString(sum[:])
}

// TestRegistryPushPullAndBuildFrom: stepexec pushes to a real registry,
// skopeo and podman read what it pushed, an empty store pulls it with
// the same image and layer IDs, another builds FROM it, and pushing that
// sends only the new layer and config.
func TestRegistryPushPullAndBuildFrom(t *testing.T) {
	reg := startRegistry(t, registryOptions{})
	proxy := startCountingProxy(t, reg.Host)
	forEachAccount(t, func(t *testing.T, a *account) {
		a = a.ownHome(t)
		repo := proxy.Host + "/" + a.name
		base := buildAndPush(t, a, repo+"/base:1", "base")

		m, digest := rawManifest(t, a, base.ref)
		if digest != base.digest {
			t.Errorf("stepexec push printed %s, the registry serves a manifest of digest %s", base.digest, digest)
		}
		if m.Config.Digest.String() != base.id || len(m.Layers) != 2 {
			t.Errorf("pushed manifest: config %s (image %s), %d layers, want 2", m.Config.Digest, base.id, len(m.Layers))
		}
		for _, l := range m.Layers {
			if l.MediaType != ocispec.MediaTypeImageLayerGzip {
				t.Errorf("layer %s has media type %s, want gzip", l.Digest, l.MediaType)
			}
		}
		var inspected struct{ Digest string }
		json.Unmarshal([]byte(a.skopeo(t, "inspect", "--tls-verify=false", "docker://"+base.ref)), &inspected)
		if inspected.Digest != base.digest {
			t.Errorf("skopeo inspect says digest %s, stepexec pushed %s", inspected.Digest, base.digest)
		}

		empty := a.otherStore("empty")
		got := strings.TrimSpace(empty.mustRun(t, "pull", base.ref).stdout)
		if got != base.id {
			t.Errorf("pull into an empty store gave image %s, pushed %s", got, base.id)
		}
		if mine, theirs := a.imageLayers(t, base.ref), empty.imageLayers(t, base.ref); !slices.Equal(mine, theirs) {
			t.Errorf("pulled layers %v, built layers %v: the IDs must be the same", theirs, mine)
		}
		testenv.CheckStore(t, empty.root)

		byDigest := a.otherStore("digest")
		dir := byDigest.writeContext(t, "by-digest", "FROM "+repo+"/base@"+base.digest+"\nRUN test -f /base.txt\n")
		byDigest.mustRun(t, "build", "-q", "--pull=always", dir)
		byDigest.imageLayers(t, repo+"/base@"+base.digest)

		other := a.otherStore("other")
		proxy.requests()
		dir = other.writeContext(t, "from-pushed", "FROM "+base.ref+"\nRUN echo app > /app.txt\n")
		appID := strings.TrimSpace(other.mustRun(t, "build", "-q", "-t", repo+"/app:1", "--push", dir).stdout)
		uploaded := uploadedBlobs(proxy.requests())
		for _, l := range m.Layers {
			if slices.Contains(uploaded, l.Digest.String()) {
				t.Errorf("base layer %s was uploaded again (uploads: %v)", l.Digest, uploaded)
			}
		}
		if len(uploaded) != 2 {
			t.Errorf("pushing an image on a pushed base uploaded %d blobs %v, want 2: its new layer and config", len(uploaded), uploaded)
		}
		other.assertClean(t)

		r := a.podman(t, "pull", "-q", "--tls-verify=false", repo+"/app:1")
		if r.code != 0 || !strings.HasPrefix(appID, "sha256:"+strings.TrimSpace(r.stdout)) {
			t.Errorf("podman pull of the pushed image: %s (stepexec's ID %s)", r, appID)
		}
		podmanStore := testenv.CheckStore(t, filepath.Join(filepath.Dir(a.root), "podman-store"))
		if want := other.imageLayers(t, repo+"/app:1"); !containsAll(podmanStore.LayerIDs(), want) {
			t.Errorf("podman's layers %v lack stepexec's %v: podman must give a pull the IDs stepexec gives", podmanStore.LayerIDs(), want)
		}
	})
}

// imageLayers lists the layer IDs of a stored image, base first, as the
// store records them.
func (a *account) imageLayers(t *testing.T, name string) []string {
	t.Helper()
	st := testenv.CheckStore(t, a.root)
	parent := map[string]string{}
	for _, l := range st.Layers {
		parent[l.ID] = l.Parent
	}
	for _, img := range st.Images {
		if !slices.Contains(img.Names, name) && !slices.Contains(img.Names, name+":latest") {
			continue
		}
		var ids []string
		for id := img.TopLayer; id != ""; id = parent[id] {
			ids = append([]string{id}, ids...)
		}
		return ids
	}
	t.Fatalf("no image %s in %s", name, a.root)
	return nil
}

func containsAll(list, want []string) bool {
	for _, w := range want {
		if !slices.Contains(list, w) {
			return false
		}
	}
	return len(want) > 0
}

// TestRegistryShortNamesMirrorsBlocked: registries.conf in the user's
// home decides where short names go (search registries, aliases, and
// docker.io/library when neither applies, here relocated to the test's
// registry), mirrors stand in for a registry that is down, and a blocked
// registry is refused.
func TestRegistryShortNamesMirrorsBlocked(t *testing.T) {
	reg := startRegistry(t, registryOptions{})
	down := freeLoopbackAddr(t)
	forEachAccount(t, func(t *testing.T, a *account) {
		a = a.ownHome(t)
		ns := reg.Host + "/" + a.name
		base := buildAndPush(t, a, ns+"/short:1", "short")
		a.mustRun(t, "push", "-q", base.ref, reg.Host+"/library/stepexec-hub-"+a.name+":1")
		a.mustRun(t, "push", "-q", base.ref, reg.Host+"/mirrored/img:1")
		conf := `unqualified-search-registries = ["` + reg.Host + `"]
[aliases]
"myalias" = "` + ns + `/short"
[[registry]]
prefix = "docker.io"
location = "` + reg.Host + `"
[[registry]]
location = "` + down + `"
[[registry.mirror]]
location = "` + reg.Host + `"
`
		a.writeUserFile(t, filepath.Join(a.home, ".config", "containers", "registries.conf"), conf)
		cases := []struct{ ref, stored string }{
			{a.name + "/short:1", ns + "/short:1"},               // unqualified-search-registries
			{"myalias:1", ns + "/short:1"},                       // an alias
			{down + "/mirrored/img:1", down + "/mirrored/img:1"}, // a mirror of a registry that is down
		}
		for _, c := range cases {
			s := a.otherStore("short-" + strings.NewReplacer("/", "-", ":", "-").Replace(c.ref))
			if got := strings.TrimSpace(s.mustRun(t, "pull", c.ref).stdout); got != base.id {
				t.Errorf("pull %s gave %s, want %s", c.ref, got, base.id)
			}
			s.imageLayers(t, c.stored)
		}
		// With search registries configured a name found nowhere fails,
		// naming every candidate; without them it means docker.io/library.
		a.writeUserFile(t, filepath.Join(a.home, ".config", "containers", "registries.conf"), "[[registry]]\nprefix = \"docker.io\"\nlocation = \""+reg.Host+"\"\n")
		hub := a.otherStore("hub")
		dir := hub.writeContext(t, "hub", "FROM stepexec-hub-"+a.name+":1\nRUN true\n")
		hub.mustRun(t, "build", "-q", dir)
		hub.imageLayers(t, "docker.io/library/stepexec-hub-"+a.name+":1")

		a.writeUserFile(t, filepath.Join(a.home, ".config", "containers", "registries.conf"), "[[registry]]\nlocation = \""+reg.Host+"\"\nblocked = true\n")
		blocked := a.otherStore("blocked")
		r := blocked.run(t, "pull", base.ref)
		if r.code == 0 || !strings.Contains(r.stderr, "blocked") {
			t.Errorf("pull from a blocked registry: %s", r)
		}
		blocked.assertClean(t)
	})
}

// TestRegistryPullPolicyAndCache: FROM pulls a missing image once;
// --pull=always asks the registry again and keeps the cache's hits when
// the image is the same, and rebuilds when the tag moved; --pull=never
// uses only the store.
func TestRegistryPullPolicyAndCache(t *testing.T) {
	reg := startRegistry(t, registryOptions{})
	proxy := startCountingProxy(t, reg.Host)
	forEachAccount(t, func(t *testing.T, a *account) {
		ref := proxy.Host + "/" + a.name + "/policy:1"
		buildAndPush(t, a, ref, "one")
		b := a.otherStore("policy")
		dir := b.writeContext(t, "policy", "FROM "+ref+"\nRUN echo step > /step.txt\n")
		never := b.run(t, "build", "--pull=never", dir)
		if never.code == 0 || !strings.Contains(never.stderr, "not found in the store") {
			t.Errorf("--pull=never with the image missing: %s", never)
		}
		b.mustRun(t, "build", "--progress=plain", dir)
		proxy.requests()
		again := b.mustRun(t, "build", "--progress=plain", dir)
		if reqs := proxy.requests(); len(reqs) != 0 || strings.Contains(again.stderr, "pulling") {
			t.Errorf("a second build with the image stored asked the registry: %v", reqs)
		}
		always := b.mustRun(t, "build", "--progress=plain", "--pull", dir)
		if !manifestFetched(proxy.requests()) || !strings.Contains(always.stderr, "CACHED") {
			t.Errorf("--pull did not re-check the registry, or lost the cache hit: %s", always)
		}
		// The tag moves: --pull=always gets the new image, the RUN runs again.
		buildAndPush(t, a.otherStore("mover"), ref, "two")
		moved := b.mustRun(t, "build", "--progress=plain", "--pull=always", dir)
		if strings.Contains(moved.stderr, "CACHED") {
			t.Errorf("after the base image changed, the RUN was still cached: %s", moved.stderr)
		}
		b.assertClean(t)
	})
}

func manifestFetched(reqs []string) bool {
	for _, r := range reqs {
		if strings.HasPrefix(r, "GET ") && strings.Contains(r, "/manifests/") {
			return true
		}
	}
	return false
}

// writeExecutable writes a script a may run.
func writeExecutable(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

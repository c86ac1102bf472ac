package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepexec/stepexec/internal/testenv"
)

var (
	embedOnce   sync.Once
	embedBinary string
	embedErr    error
)

// buildEmbedExample builds examples/embed, the program that embeds
// stepexec, as an embedder would: go build with the build tags.
func buildEmbedExample(t *testing.T) string {
	t.Helper()
	embedOnce.Do(func() {
		tags, err := os.ReadFile(filepath.Join(repo, "scripts", "build-tags"))
		if err != nil {
			embedErr = err
			return
		}
		embedBinary, embedErr = helperProgram("embed", nil, "-tags", strings.TrimSpace(string(tags)), "./examples/embed")
	})
	if embedErr != nil {
		t.Fatal(embedErr)
	}
	return embedBinary
}

// storageConf writes a containers/storage config naming the account's
// store, which the example (Open without options) takes as podman would.
func (a *account) storageConf(t *testing.T) string {
	t.Helper()
	conf := filepath.Join(a.work, "storage.conf")
	text := fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n", a.root, a.runRoot)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}

var imageIDLine = regexp.MustCompile(`^sha256:([0-9a-f]{64})\n$`)

// TestEmbedExample builds examples/embed and runs it as the unprivileged
// user and as root: the ID it prints names an image in the store, under
// the name it was given, whose top layer holds what the RUN wrote and
// whose layer below holds the COPY; nothing is left behind.
func TestEmbedExample(t *testing.T) {
	prog := buildEmbedExample(t)
	for _, a := range accounts(t) {
		t.Run(a.name, func(t *testing.T) {
			a.importAlpine(t)
			before := a.storeLayers(t)
			dir := a.writeContext(t, "embed", "FROM alpine\nCOPY note /note\nRUN echo embedded by $(id -u) > /hello\n")
			writeFileAs(t, a, filepath.Join(dir, "note"), "copied\n")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := a.commandOf(ctx, prog, dir, "embedded")
			cmd.Env = append(cmd.Env, "CONTAINERS_STORAGE_CONF="+a.storageConf(t))
			r := runCmd(t, cmd)
			m := imageIDLine.FindStringSubmatch(r.stdout)
			if r.code != 0 || m == nil {
				t.Fatalf("embed as %s: want exit 0 and one image ID line: %s", a.name, r)
			}
			top := storedImage(t, a, m[1], "localhost/embedded:latest")
			diff := func(layer, name string) string {
				b, err := os.ReadFile(filepath.Join(a.root, "overlay", layer, "diff", name))
				if err != nil {
					t.Fatal(err)
				}
				return string(b)
			}
			if got := diff(top.id, "hello"); got != "embedded by 0\n" {
				t.Errorf("the RUN's layer holds hello = %q, want %q", got, "embedded by 0\n")
			}
			if got := diff(top.parent, "note"); got != "copied\n" {
				t.Errorf("the COPY's layer holds note = %q, want %q", got, "copied\n")
			}
			a.assertNothingLeft(t, before)
		})
	}
}

// storedLayer is an image's top layer and the one under it.
type storedLayer struct{ id, parent string }

// storedImage finds the image id in the account's store, checks it has
// the name, and returns its top layer.
func storedImage(t *testing.T, a *account, id, name string) storedLayer {
	t.Helper()
	st, err := testenv.ReadStore(a.root)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range st.Images {
		if img.ID != id {
			continue
		}
		if !slices.Contains(img.Names, name) {
			t.Errorf("image %s is named %v, want %s among them", id, img.Names, name)
		}
		for _, l := range st.Layers {
			if l.ID == img.TopLayer {
				return storedLayer{l.ID, l.Parent}
			}
		}
		t.Fatalf("image %s: its top layer %s is not in the store", id, img.TopLayer)
	}
	t.Fatalf("the printed ID %s names no image in %s", id, a.root)
	return storedLayer{}
}

// writeFileAs writes a file the account owns.
func writeFileAs(t *testing.T, a *account, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		os.Chown(path, a.uid, a.gid)
	}
}

package conformance

import (
	"archive/tar"
	"bytes"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// withConfig sets the image's config and history; one history entry per
// layer unless more are given.
func withConfig(t *testing.T, img v1.Image, cfg v1.Config, history ...v1.History) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", "amd64", cfg
	cf.History = history
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMakeDeltaFromBase(t *testing.T) {
	baseLayer := layer(t, dir("etc/"), file("etc/motd", "hi\n"), file("etc/issue", "alpine\n"), dir("tmp/"))
	base := withConfig(t, image(t, baseLayer), v1.Config{Cmd: []string{"/bin/sh"}},
		v1.History{CreatedBy: "ADD"}, v1.History{CreatedBy: "CMD", EmptyLayer: true})
	run := layer(t, dir("etc/"), whiteout("etc/", "motd"), withMode(file("etc/issue", "alpine\n"), 0o600),
		file("new", "secret-ish token"), ent{name: "tmp/", typ: tar.TypeDir, mode: 0o755,
			pax: map[string]string{"SCHILY.xattr.user.overlay.origin": "", "SCHILY.xattr.user.keep": "1"}})
	img, err := mutate.AppendLayers(base, run)
	if err != nil {
		t.Fatal(err)
	}
	img = withConfig(t, img, v1.Config{Env: []string{"A=1"}, Labels: map[string]string{"k": "v"}},
		v1.History{CreatedBy: "ADD"}, v1.History{CreatedBy: "CMD", EmptyLayer: true},
		v1.History{CreatedBy: "ENV", EmptyLayer: true}, v1.History{CreatedBy: "RUN"})

	r, err := Make(img, base, []string{"token", "absent"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.DeltaFromBase || r.Platform != "linux/amd64" {
		t.Errorf("delta %v, platform %q", r.DeltaFromBase, r.Platform)
	}
	if want := []string{"empty", "layer"}; !reflect.DeepEqual(r.History, want) {
		t.Errorf("history %v, want %v (the base's entries skipped)", r.History, want)
	}
	if want := []string{"token"}; !reflect.DeepEqual(r.Leaked, want) {
		t.Errorf("leaked %v, want %v", r.Leaked, want)
	}
	if want := []string{"/tmp"}; !reflect.DeepEqual(r.OverlayXattrs, want) {
		t.Errorf("overlay_xattrs %v, want %v", r.OverlayXattrs, want)
	}
	var paths []string
	for p := range r.FS {
		paths = append(paths, p)
	}
	// /etc is unchanged (only its mtime would differ), /tmp differs by a
	// real xattr, /etc/issue by its mode.
	want := map[string]bool{"/etc/motd": true, "/etc/issue": true, "/new": true, "/tmp": true}
	if len(r.FS) != len(want) {
		t.Errorf("delta paths %v, want %v", paths, want)
	}
	if e, ok := r.FS["/etc/motd"]; !ok || e != nil {
		t.Errorf("/etc/motd should be removed (nil), got %v %v", ok, e)
	}
	if e := r.FS["/etc/issue"]; e == nil || e.Mode != "0600" {
		t.Errorf("/etc/issue = %+v, want mode 0600", e)
	}
	if e := r.FS["/tmp"]; e == nil || !reflect.DeepEqual(e.Xattrs, map[string]string{"user.keep": "31"}) {
		t.Errorf("/tmp = %+v, want only the user.keep xattr", e)
	}

	// The golden's text form reads back the same.
	data, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(data)
	if err != nil {
		t.Fatalf("decoding %s: %v", data, err)
	}
	if d := Compare(r, back); len(d) != 0 {
		t.Errorf("encode/decode changed the result: %v\n%s", d, data)
	}
	if !strings.Contains(string(data), "\n    \"/etc/motd\": null,\n") {
		t.Errorf("fs entries are not one per line:\n%s", data)
	}
}

func TestMakeWithoutTheBaseIsTheWholeTree(t *testing.T) {
	base := image(t, layer(t, file("base", "b")))
	img := withConfig(t, image(t, layer(t, file("only", "o"))), v1.Config{}, v1.History{CreatedBy: "COPY"})
	r, err := Make(img, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.DeltaFromBase || len(r.FS) != 1 || r.FS["/only"] == nil || !reflect.DeepEqual(r.History, []string{"layer"}) {
		t.Errorf("FROM scratch result: delta %v, fs %v, history %v", r.DeltaFromBase, r.FS, r.History)
	}
}

func TestScanFindsNeedlesAcrossReads(t *testing.T) {
	data := bytes.Repeat([]byte("a"), 1<<16-3)
	data = append(data, []byte("needle-and-more")...)
	found := map[string]bool{}
	if err := scan(bytes.NewReader(data), []string{"needle", "nowhere"}, found); err != nil {
		t.Fatal(err)
	}
	if !found["needle"] || found["nowhere"] {
		t.Errorf("found %v", found)
	}
}

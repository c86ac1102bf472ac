package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// setLowerdirAppend makes mountOverlay act as on a kernel with (or
// without) "lowerdir+" until the returned func restores the probe.
func setLowerdirAppend(supported bool) (restore func()) {
	saved := lowerdirAppend
	lowerdirAppend = func() bool { return supported }
	return func() { lowerdirAppend = saved }
}

// layerDirs makes n lower dirs under base, top first (index 0 is the top
// layer), each named with pad extra bytes: layer i holds "file-i" = "i"
// and "shadow" = "i"; the bottom one also holds "gone", which the one
// above it whites out.
func layerDirs(t *testing.T, base string, n, pad int) []string {
	t.Helper()
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = filepath.Join(base, fmt.Sprintf("layer-%03d-%s", i, strings.Repeat("x", pad)))
		writeTree(t, dirs[i], map[string]string{fmt.Sprintf("file-%d", i): strconv.Itoa(i), "shadow": strconv.Itoa(i)})
	}
	writeTree(t, dirs[n-1], map[string]string{"gone": "x"})
	if err := unix.Mknod(filepath.Join(dirs[n-2], "gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatalf("making a whiteout: %v", err)
	}
	return dirs
}

// shortLinks makes a short symlink to each dir in base/l, as the overlay
// driver's "l/" links.
func shortLinks(t *testing.T, base string, dirs []string) []string {
	t.Helper()
	links := make([]string, len(dirs))
	for i, d := range dirs {
		links[i] = filepath.Join(base, "l", fmt.Sprintf("L%03d", i))
		if err := os.MkdirAll(filepath.Dir(links[i]), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(d, links[i]); err != nil {
			t.Fatal(err)
		}
	}
	return links
}

// lowerdirOption is the lowerdir= value mountinfo shows for target.
func lowerdirOption(t *testing.T, target string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[4] != target {
			continue
		}
		_, super, _ := strings.Cut(line, " - ")
		for _, o := range strings.Split(strings.Fields(super)[2], ",") {
			if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
				return v
			}
		}
	}
	t.Fatalf("no overlay with lowerdir= mounted at %s", target)
	return ""
}

func allDigits(lowerdir string, n int) bool {
	parts := strings.Split(lowerdir, ":")
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil {
			return false
		}
	}
	return len(parts) == n
}

// TestLegacyMount mounts overlays through the mount(2) fallback (as on a
// kernel before 6.8) with chains short enough for full paths, long enough
// to need the short links, and of 200 layers with long paths, which only
// fd numbers fit in one page; then checks the merged tree: every layer's
// file, the top layer's copy of a shadowed file, a whiteout, and (writable)
// that a new file lands in the upper dir. No fd is left open.
func TestLegacyMount(t *testing.T) {
	cases := []struct {
		name     string
		layers   int
		pad      int
		links    bool
		sep      string // appended to the base dir's name
		readOnly bool
		want     string // full, links or fds: how mountinfo names the layers
	}{
		{name: "full paths", layers: 3, want: "full"},
		{name: "short links", layers: 30, pad: 150, links: true, want: "links"},
		{name: "200 layers by fd", layers: 200, pad: 60, want: "fds"},
		{name: "200 layers read-only by fd", layers: 200, pad: 60, readOnly: true, want: "fds"},
		{name: "200 layers with unusable links", layers: 200, pad: 60, links: true, want: "fds"},
		{name: "comma in a path", layers: 2, sep: "a,b", want: "fds"},
	}
	restore := setLowerdirAppend(false)
	defer restore()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := filepath.Join(t.TempDir(), "base"+c.sep)
			m := overlayMount{lowers: layerDirs(t, base, c.layers, c.pad), target: filepath.Join(base, "merged"),
				userxattr: inUserNamespace(), readOnly: c.readOnly}
			if c.links {
				m.legacyShortcuts = shortLinks(t, base, m.lowers)
			}
			if !c.readOnly {
				m.upper, m.work = filepath.Join(base, "upper"), filepath.Join(base, "work")
			}
			for _, d := range []string{m.target, m.upper, m.work} {
				if d != "" {
					if err := os.Mkdir(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
			}
			fds := openFds(t)
			if err := mountOverlay(m); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := unmount(m.target); err != nil {
					t.Error(err)
				}
			}()
			if got := openFds(t); got != fds {
				t.Errorf("%d fds open after the mount, %d before", got, fds)
			}
			checkLowerdirForm(t, m, c.want)
			checkMergedTree(t, m)
		})
	}
}

func openFds(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// checkLowerdirForm checks which of the three forms the mount took.
func checkLowerdirForm(t *testing.T, m overlayMount, want string) {
	t.Helper()
	got := lowerdirOption(t, m.target)
	var ok bool
	switch want {
	case "full":
		ok = got == strings.Join(m.lowers, ":")
	case "links":
		ok = got == strings.Join(m.legacyShortcuts, ":")
	case "fds":
		ok = allDigits(got, len(m.lowers))
	}
	if !ok {
		t.Errorf("lowerdir=%.200s…, want the %s form", got, want)
	}
}

func checkMergedTree(t *testing.T, m overlayMount) {
	t.Helper()
	for i := range m.lowers {
		name := fmt.Sprintf("file-%d", i)
		if b, err := os.ReadFile(filepath.Join(m.target, name)); err != nil || string(b) != strconv.Itoa(i) {
			t.Fatalf("%s = %q, %v; want %q", name, b, err, strconv.Itoa(i))
		}
	}
	if b, err := os.ReadFile(filepath.Join(m.target, "shadow")); err != nil || string(b) != "0" {
		t.Errorf("shadow = %q, %v; want the top layer's \"0\"", b, err)
	}
	if _, err := os.Lstat(filepath.Join(m.target, "gone")); !os.IsNotExist(err) {
		t.Errorf("a whited-out file is visible: %v", err)
	}
	if m.readOnly {
		if err := os.WriteFile(filepath.Join(m.target, "new"), nil, 0o644); err == nil {
			t.Error("wrote to a read-only overlay")
		}
		return
	}
	if err := os.WriteFile(filepath.Join(m.target, "new"), []byte("n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(m.upper, "new")); err != nil || string(b) != "n" {
		t.Errorf("upper/new = %q, %v; want the file written to the overlay", b, err)
	}
}

// TestLongChainWithoutLowerdirAppend builds a 200-layer chain in a store
// as on a kernel without "lowerdir+" (each snapshot on the chain so far,
// through mount(2)), then checks a snapshot and a read-only view of the
// whole chain show every layer's file, and a file deleted 100 layers down
// stays deleted.
func TestLongChainWithoutLowerdirAppend(t *testing.T) {
	restore := setLowerdirAppend(false)
	defer restore()
	s, _ := openTestStore(t)
	ctx := t.Context()
	parent := ""
	for i := range 200 {
		key := fmt.Sprintf("l%d", i)
		snap, err := s.Prepare(ctx, key, parent)
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		writeTree(t, snap.Dir, map[string]string{fmt.Sprintf("file-%d", i): strconv.Itoa(i)})
		if i == 100 {
			if err := os.Remove(filepath.Join(snap.Dir, "file-0")); err != nil {
				t.Fatal(err)
			}
		}
		c, err := s.Commit(ctx, key)
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		parent = c.Layer.ID
	}
	snap, err := s.Prepare(ctx, "top", parent)
	if err != nil {
		t.Fatal(err)
	}
	view, err := s.View(ctx, "view", parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{snap.Dir, view.Dir} {
		if lowers := lowerdirOption(t, dir); !allDigits(lowers, strings.Count(lowers, ":")+1) {
			t.Errorf("%s: lowerdir=%.100s…, want fd numbers (full paths and links are too long)", dir, lowers)
		}
		for i := 1; i < 200; i++ {
			name := fmt.Sprintf("file-%d", i)
			if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != strconv.Itoa(i) {
				t.Fatalf("%s/%s = %q, %v; want %q", dir, name, b, err, strconv.Itoa(i))
			}
		}
		if _, err := os.Lstat(filepath.Join(dir, "file-0")); !os.IsNotExist(err) {
			t.Errorf("%s: the file deleted in layer 100 is visible: %v", dir, err)
		}
	}
	for _, key := range []string{"top", "view"} {
		if err := s.Remove(ctx, key); err != nil {
			t.Error(err)
		}
	}
}

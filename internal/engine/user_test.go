package engine

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stepexec/stepexec/runtime"
)

func userRoot(t *testing.T) string {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\napp:x:1001:2000::/:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:root\nwheel:x:10:root,bob\nbob:x:1000:\naudio:x:18:bob\nstaff:x:50:\n"), 0o644)
	return root
}

func TestLookupUser(t *testing.T) {
	root := userRoot(t)
	cases := []struct {
		spec string
		want runtime.User
	}{
		{"", runtime.User{UID: 0, GID: 0, AdditionalGIDs: []uint32{0, 10}}},
		{"bob", runtime.User{UID: 1000, GID: 1000, AdditionalGIDs: []uint32{1000, 10, 18}}},
		{"bob:staff", runtime.User{UID: 1000, GID: 50, AdditionalGIDs: []uint32{50}}}, // an explicit group: no others, as docker
		{"1000:18", runtime.User{UID: 1000, GID: 18, AdditionalGIDs: []uint32{18}}},
		{"4242", runtime.User{UID: 4242, GID: 0, AdditionalGIDs: []uint32{0}}},
	}
	for _, c := range cases {
		got, err := lookupUser(context.Background(), root, c.spec)
		if err != nil {
			t.Errorf("lookupUser(%q): %v", c.spec, err)
			continue
		}
		if got.UID != c.want.UID || got.GID != c.want.GID || !slices.Equal(got.AdditionalGIDs, c.want.AdditionalGIDs) {
			t.Errorf("lookupUser(%q) = %+v, want %+v", c.spec, got, c.want)
		}
	}
	if _, err := lookupUser(context.Background(), root, "nobody-here"); err == nil {
		t.Error("an unknown user name resolved")
	}
	// A rootfs whose /etc/passwd points at the host's must not read it.
	evil := t.TempDir()
	os.MkdirAll(filepath.Join(evil, "etc"), 0o755)
	host := filepath.Join(t.TempDir(), "passwd")
	os.WriteFile(host, []byte("root:x:0:0::/:/bin/sh\nhostuser:x:777:777::/:/bin/sh\n"), 0o644)
	os.Symlink(host, filepath.Join(evil, "etc/passwd"))
	if u, err := lookupUser(context.Background(), evil, "hostuser"); err == nil {
		t.Errorf("resolved a user through a symlink out of the rootfs: %+v", u)
	}
}

// A FIFO planted as /etc/passwd (a RUN can make one) is refused at once
// instead of blocking the build.
func TestLookupUserRefusesSpecialFiles(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	if err := syscall.Mkfifo(filepath.Join(root, "etc/passwd"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := lookupUser(context.Background(), root, "bob")
	if err == nil || !strings.Contains(err.Error(), "the image's /etc/passwd is a named pipe (FIFO), not a regular file") {
		t.Errorf("lookupUser on a FIFO: %v", err)
	}
	if _, _, err := resolveChown(context.Background(), root, "bob"); err == nil {
		t.Error("resolveChown read a FIFO")
	}
}

func TestResolveChown(t *testing.T) {
	root := userRoot(t)
	cases := []struct {
		spec     string
		uid, gid int
	}{
		{"bob", 1000, 1000},
		{"app", 1001, 2000},     // a name brings its primary group
		{"1234", 1234, 1234},    // a number is also the group
		{"app:staff", 1001, 50}, // group by name
		{"app:7", 1001, 7},
		{"root:staff", 0, 50},
		{"ghost", 0, 0}, // BuildKit: an unknown name is root
		{"ghost:nogroup", 0, 0},
	}
	for _, c := range cases {
		uid, gid, err := resolveChown(context.Background(), root, c.spec)
		if err != nil || uid != c.uid || gid != c.gid {
			t.Errorf("resolveChown(%q) = %d:%d %v, want %d:%d", c.spec, uid, gid, err, c.uid, c.gid)
		}
	}
}

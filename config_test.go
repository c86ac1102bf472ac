package stepexec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/stepexec/stepexec/runtime"
)

func TestInherit(t *testing.T) {
	base := ocispec.Image{
		Config:  ocispec.ImageConfig{Env: []string{"A=1"}, Cmd: []string{"sh"}, Labels: map[string]string{"k": "v"}},
		History: []ocispec.History{{CreatedBy: "base"}},
		RootFS:  ocispec.RootFS{Type: "layers", DiffIDs: nil},
	}
	cfg := inherit(base)
	if cfg.OS != "linux" || cfg.Architecture == "" {
		t.Errorf("platform = %+v", cfg.Platform)
	}
	if !slices.Contains(cfg.Config.Env, defaultPath) {
		t.Errorf("PATH not defaulted: %v", cfg.Config.Env)
	}
	// The copy must not share storage with the base image's config.
	cfg.Config.Labels["k"] = "changed"
	cfg.Config.Env[0] = "A=2"
	cfg.History[0].CreatedBy = "changed"
	if base.Config.Labels["k"] != "v" || base.Config.Env[0] != "A=1" || base.History[0].CreatedBy != "base" {
		t.Errorf("inherit aliases the base config: %+v", base)
	}
	withPath := inherit(ocispec.Image{Config: ocispec.ImageConfig{Env: []string{"PATH=/custom"}}})
	if len(withPath.Config.Env) != 1 {
		t.Errorf("an image's own PATH was overridden: %v", withPath.Config.Env)
	}
}

func TestLookupUser(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:root\nwheel:x:10:root,bob\nbob:x:1000:\naudio:x:18:bob\n"), 0o644)

	cases := []struct {
		spec string
		want runtime.User
	}{
		{"", runtime.User{UID: 0, GID: 0, AdditionalGIDs: []uint32{10}}},
		{"bob", runtime.User{UID: 1000, GID: 1000, AdditionalGIDs: []uint32{10, 18}}},
		{"1000:18", runtime.User{UID: 1000, GID: 18}},
		{"4242", runtime.User{UID: 4242, GID: 0}},
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

// TestLookupUserRefusesSpecialFiles: a RUN can leave a FIFO (or a
// directory) at /etc/passwd or /etc/group, read before every RUN and
// WORKDIR. It must be refused at once, naming the file, not block the build.
func TestLookupUserRefusesSpecialFiles(t *testing.T) {
	cases := []struct {
		name string
		make func(root string) error
		want string
	}{
		{"fifo passwd", func(root string) error { return unix.Mkfifo(filepath.Join(root, "etc/passwd"), 0o644) },
			"/etc/passwd is a named pipe (FIFO), not a regular file"},
		{"fifo group", func(root string) error { return unix.Mkfifo(filepath.Join(root, "etc/group"), 0o644) },
			"/etc/group is a named pipe (FIFO), not a regular file"},
		{"symlink to a fifo", func(root string) error {
			if err := unix.Mkfifo(filepath.Join(root, "etc/pipe"), 0o644); err != nil {
				return err
			}
			return os.Symlink("/etc/pipe", filepath.Join(root, "etc/passwd"))
		}, "/etc/passwd is a named pipe (FIFO), not a regular file"},
		{"directory", func(root string) error { return os.Mkdir(filepath.Join(root, "etc/group"), 0o755) },
			"/etc/group is a directory, not a regular file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := c.make(root); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := lookupUser(context.Background(), root, "")
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("lookupUser: %v, want an error saying %q", err, c.want)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("lookupUser blocked")
			}
		})
	}
}

func TestLookupUserCancelled(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := lookupUser(ctx, root, "root"); !errors.Is(err, context.Canceled) {
		t.Errorf("lookupUser with a cancelled context: %v", err)
	}
}

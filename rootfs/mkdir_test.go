package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMkdirAll(t *testing.T) {
	for _, tc := range []struct {
		name        string
		setup       map[string]string // rel -> "dir", "file" or "->target"
		path        string
		wantCreated bool
		wantDirs    []string // rel paths that must now be dirs owned 1000:1001 mode 0755
		wantErr     string
	}{
		{name: "nested", path: "/a/b/c", wantCreated: true, wantDirs: []string{"a", "a/b", "a/b/c"}},
		{name: "partly existing", setup: map[string]string{"a": "dir"}, path: "/a/b", wantCreated: true, wantDirs: []string{"a/b"}},
		{name: "existing", setup: map[string]string{"a": "dir", "a/b": "dir"}, path: "/a/b/", wantCreated: false},
		{name: "root", path: "/", wantCreated: false},
		{name: "relative taken from root", path: "x/y", wantCreated: true, wantDirs: []string{"x", "x/y"}},
		{name: "dotdot clamped at root", path: "/../../x", wantCreated: true, wantDirs: []string{"x"}},
		{name: "absolute symlink followed in root", setup: map[string]string{"etc": "dir", "link": "->/etc"}, path: "/link/x",
			wantCreated: true, wantDirs: []string{"etc/x"}},
		{name: "climbing symlink clamped in root", setup: map[string]string{"outside": "dir", "link": "->../../outside"}, path: "/link/x",
			wantCreated: true, wantDirs: []string{"outside/x"}},
		{name: "dangling symlink escaping", setup: map[string]string{"link": "->../../outside"}, path: "/link/x",
			wantErr: `"link" exists but does not resolve to a directory inside the root`},
		{name: "file in the way", setup: map[string]string{"f": "file"}, path: "/f/x", wantErr: "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			root := filepath.Join(base, "root")
			outside := filepath.Join(base, "outside")
			for _, d := range []string{root, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for rel, kind := range tc.setup {
				p := filepath.Join(root, rel)
				var err error
				switch {
				case kind == "dir":
					err = os.MkdirAll(p, 0o755)
				case kind == "file":
					err = os.WriteFile(p, nil, 0o644)
				default:
					err = os.Symlink(strings.TrimPrefix(kind, "->"), p)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			before := snapshot(t, base, root)
			created, err := MkdirAll(root, tc.path, 1000, 1001)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if created != tc.wantCreated {
				t.Errorf("created = %v, want %v", created, tc.wantCreated)
			}
			for _, rel := range tc.wantDirs {
				s := lstat(t, filepath.Join(root, rel))
				if s.Mode != unix.S_IFDIR|0o755 || s.Uid != 1000 || s.Gid != 1001 {
					t.Errorf("%s: mode %o owner %d:%d, want dir 0755 1000:1001", rel, s.Mode, s.Uid, s.Gid)
				}
			}
			outsideUnchanged(t, before, snapshot(t, base, root))
		})
	}
}

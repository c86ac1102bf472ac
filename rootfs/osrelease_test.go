package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestOSRelease(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string]string // rel -> content; "->target" makes a symlink
		want    map[string]string
		wantErr error
		wantMsg string // the error names the file and what it is
	}{
		{name: "etc", files: map[string]string{"etc/os-release": "# c\nID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n\nNAME='Debian'\nX=\"a \\\"q\\\" \\$b\"\n"},
			want: map[string]string{"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)", "NAME": "Debian", "X": `a "q" $b`}},
		{name: "usr lib fallback", files: map[string]string{"usr/lib/os-release": "ID=fedora\nVERSION_ID=40\n"},
			want: map[string]string{"ID": "fedora", "VERSION_ID": "40"}},
		{name: "etc wins", files: map[string]string{"etc/os-release": "ID=a\n", "usr/lib/os-release": "ID=b\n"},
			want: map[string]string{"ID": "a"}},
		{name: "relative symlink", files: map[string]string{"etc/os-release": "->../usr/lib/os-release", "usr/lib/os-release": "ID=alpine\n"},
			want: map[string]string{"ID": "alpine"}},
		{name: "absolute symlink resolved in root", files: map[string]string{"etc/os-release": "->/usr/lib/os-release", "usr/lib/os-release": "ID=alpine\n"},
			want: map[string]string{"ID": "alpine"}},
		{name: "symlink escaping to a host file is not read", files: map[string]string{"etc/os-release": "->../../../outside/os-release"},
			wantErr: os.ErrNotExist},
		{name: "absent", files: map[string]string{"etc/hostname": "x"}, wantErr: os.ErrNotExist},
		{name: "fifo is refused, not waited on", files: map[string]string{"etc/os-release": "|fifo", "usr/lib/os-release": "ID=alpine\n"},
			wantMsg: "/etc/os-release is a named pipe (FIFO), not a regular file"},
		{name: "fifo behind a symlink", files: map[string]string{"etc/os-release": "->../usr/lib/os-release", "usr/lib/os-release": "|fifo"},
			wantMsg: "/etc/os-release is a named pipe (FIFO), not a regular file"},
		{name: "directory", files: map[string]string{"usr/lib/os-release/x": "ID=x\n"},
			wantMsg: "/usr/lib/os-release is a directory, not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			root := filepath.Join(base, "root")
			if err := os.MkdirAll(filepath.Join(base, "outside"), 0o755); err != nil {
				t.Fatal(err)
			}
			// A host os-release an escaping symlink would reach.
			if err := os.WriteFile(filepath.Join(base, "outside/os-release"), []byte("ID=evil\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			for rel, content := range tc.files {
				p := filepath.Join(root, rel)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				var err error
				if target, ok := strings.CutPrefix(content, "->"); ok {
					err = os.Symlink(target, p)
				} else if content == "|fifo" {
					err = unix.Mkfifo(p, 0o644)
				} else {
					err = os.WriteFile(p, []byte(content), 0o644)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			var got map[string]string
			var err error
			done := make(chan struct{})
			go func() {
				defer close(done)
				got, err = OSRelease(root)
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("OSRelease blocked")
			}
			if tc.wantMsg != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantMsg)
				}
				return
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v (%v), want %v", err, got, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestImportNames(t *testing.T) {
	for _, tc := range []struct {
		osr  map[string]string
		want []string
	}{
		{map[string]string{"ID": "alpine", "VERSION_ID": "3.20.3"}, []string{"alpine:3.20.3", "alpine:3.20", "alpine:latest"}},
		{map[string]string{"ID": "alpine", "VERSION_ID": "3.21.0_alpha20240807"}, []string{"alpine:3.21.0_alpha20240807", "alpine:latest"}},
		{map[string]string{"ID": "debian", "VERSION_ID": "12"}, []string{"debian:12", "debian:latest"}},
		{map[string]string{"ID": "ubuntu", "VERSION_ID": "24.04"}, []string{"ubuntu:24.04", "ubuntu:latest"}},
		{map[string]string{"ID": "arch"}, []string{"arch:latest"}},
		{map[string]string{"ID": "x", "VERSION_ID": "bad version"}, []string{"x:latest"}},
		{map[string]string{"ID": "Bad ID", "VERSION_ID": "1"}, nil},
		{map[string]string{}, nil},
		{nil, nil},
	} {
		if got := ImportNames(tc.osr); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ImportNames(%v) = %q, want %q", tc.osr, got, tc.want)
		}
	}
}

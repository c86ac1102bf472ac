package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/testenv"
)

// TestOverlayWithoutLayerFds: where overlay takes no layer fds (Debian 12's
// 6.1 refuses them with EOPNOTSUPP, 6.5 to 6.12 with EINVAL) a writable view
// is mounted with mount(2) and the fds' /proc paths: it shows the lower
// layer, and writes land in the upper dir only.
func TestOverlayWithoutLayerFds(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{unix.EOPNOTSUPP, true},
		{fmt.Errorf("fsconfig: %w", unix.EINVAL), true},
		{unix.EPERM, false},
		{unix.EBADF, false},
	} {
		if got := noLayerFds(c.err); got != c.want {
			t.Errorf("noLayerFds(%v) = %v, want %v", c.err, got, c.want)
		}
	}

	base := t.TempDir()
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "lower", "old"), []byte("from the lower layer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fds := map[string]*os.File{}
	for _, d := range []string{"lower", "upper", "work"} {
		f, err := openLayer(nil, filepath.Join(base, d), false)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fds[d] = f
	}
	merged := filepath.Join(base, "merged")
	if err := mountOverlayLegacy(fds["lower"], fds["upper"], fds["work"], merged); err != nil {
		testenv.Need(t, false, "overlay mount: %v", err)
	}
	defer func() {
		if err := unix.Unmount(merged, 0); err != nil {
			t.Errorf("unmount %s: %v", merged, err)
		}
	}()
	if b, err := os.ReadFile(filepath.Join(merged, "old")); err != nil || string(b) != "from the lower layer\n" {
		t.Errorf("lower file through the overlay: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(merged, "new"), []byte("written\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(base, "upper", "new")); err != nil || string(b) != "written\n" {
		t.Errorf("the write in the upper dir: %q %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(base, "lower", "new")); !os.IsNotExist(err) {
		t.Errorf("the write reached the lower layer: %v", err)
	}
}

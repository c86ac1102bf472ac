package safefile

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestOpenRefusesWhatIsNotAFile opens each kind of file the way stepexec
// opens a Dockerfile: a FIFO with no writer must be refused at once, not
// block until one comes.
func TestOpenRefusesWhatIsNotAFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	link := filepath.Join(dir, "link")
	if err := os.Symlink("fifo", link); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path, want string
	}{
		{file, ""},
		{fifo, fifo + " is a named pipe (FIFO), not a regular file"},
		{link, link + " is a named pipe (FIFO), not a regular file"},
		{dir, dir + " is a directory, not a regular file"},
		{sock, sock + " is a socket, not a regular file"},
		{"/dev/null", "/dev/null is a character device, not a regular file"},
		{filepath.Join(dir, "missing"), "no such file or directory"},
	}
	for _, c := range cases {
		done := make(chan struct{})
		var f *os.File
		var err error
		go func() {
			defer close(done)
			f, err = Open(c.path)
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			// Unblock the open so the test can end.
			if w, werr := os.OpenFile(c.path, os.O_WRONLY|unix.O_NONBLOCK, 0); werr == nil {
				w.Close()
			}
			<-done
			t.Fatalf("Open(%s) blocked", c.path)
		}
		if c.want == "" {
			if err != nil {
				t.Fatalf("Open(%s): %v", c.path, err)
			}
			data, err := io.ReadAll(f)
			f.Close()
			if err != nil || string(data) != "content" {
				t.Errorf("read %q, %v", data, err)
			}
			if f.Name() != c.path {
				t.Errorf("name %q, want %q", f.Name(), c.path)
			}
			continue
		}
		if err == nil {
			f.Close()
			t.Errorf("Open(%s) opened it", c.path)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%s) = %v, want %q", c.path, err, c.want)
		}
		var nr *NotRegularError
		if strings.Contains(c.want, "not a regular file") != errors.As(err, &nr) {
			t.Errorf("Open(%s): %T is the wrong type", c.path, err)
		}
	}
}

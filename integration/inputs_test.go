package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/testenv"
)

// runWithin runs the binary as the account and fails the test if it is
// still running after limit: a FIFO where a file is expected must not block
// stepexec. stdin may be nil.
func (a *account) runWithin(t *testing.T, limit time.Duration, stdin io.Reader, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := a.command(ctx, args...)
	cmd.Stdin = stdin
	r := runCmd(t, cmd)
	if ctx.Err() != nil {
		t.Fatalf("stepexec %s still running after %v (blocked?): %s", strings.Join(args, " "), limit, r)
	}
	return r
}

// own gives path to the account, so it can read what the test made.
func (a *account) own(t *testing.T, path string) {
	t.Helper()
	if os.Getuid() == 0 {
		if err := os.Lchown(path, a.uid, a.gid); err != nil {
			t.Fatal(err)
		}
	}
}

func (a *account) mkfifo(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(a.work, name)
	if err := unix.Mkfifo(p, 0o644); err != nil {
		t.Fatal(err)
	}
	a.own(t, p)
	return p
}

// writeTar writes a plain tar of the given entries into the account's work dir.
func (a *account) writeTar(t *testing.T, name string, hdrs ...*tar.Header) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if h.Mode == 0 {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Close()
	p := filepath.Join(a.work, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	a.own(t, p)
	return p
}

// TestFIFOsAreRefusedNotWaitedOn: a FIFO where stepexec reads a file —
// the image's /etc/passwd or /etc/group (read before each RUN and
// WORKDIR, and a RUN can plant one), /etc/os-release on import, the
// Dockerfile, the tarball — fails the command at once, naming it, and
// leaves nothing behind.
func TestFIFOsAreRefusedNotWaitedOn(t *testing.T) {
	const limit = 2 * time.Minute
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		before := a.storeLayers(t)
		for _, c := range []struct{ name, dockerfile, want string }{
			{"passwd before RUN", "FROM alpine\nRUN rm /etc/passwd && mkfifo /etc/passwd\nRUN echo never\n",
				"Dockerfile:3: RUN echo never: the image's /etc/passwd is a named pipe (FIFO), not a regular file"},
			// WORKDIR reads the group file to own its directory by USER's group.
			{"group before WORKDIR", "FROM alpine\nRUN adduser -D app && rm /etc/group && mkfifo /etc/group\nUSER app:app\nWORKDIR /somewhere\n",
				"Dockerfile:4: WORKDIR /somewhere: the image's /etc/group is a named pipe (FIFO), not a regular file"},
		} {
			ctxDir := a.writeContext(t, "fifo-"+strings.Fields(c.name)[0], c.dockerfile)
			r := a.runWithin(t, limit, nil, "build", "--progress=plain", "-t", "fifo", ctxDir)
			if r.code != 1 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("%s: want exit 1 saying %q, got %s", c.name, c.want, r)
			}
		}

		fifo := a.mkfifo(t, "Dockerfile.fifo")
		ctxDir := a.writeContext(t, "fifo-f", "FROM alpine\n")
		r := a.runWithin(t, limit, nil, "build", "-f", fifo, ctxDir)
		if want := fifo + " is a named pipe (FIFO), not a regular file"; r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("-f FIFO: want exit 1 saying %q, got %s", want, r)
		}

		tarFifo := a.mkfifo(t, "rootfs.tar")
		r = a.runWithin(t, limit, nil, "import", tarFifo, "x")
		if want := tarFifo + " is a named pipe (FIFO), not a regular file (to import from a pipe, give -"; r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("import FIFO: want exit 1 saying %q, got %s", want, r)
		}

		osr := a.writeTar(t, "osr-fifo.tar",
			&tar.Header{Typeflag: tar.TypeDir, Name: "etc/"},
			&tar.Header{Typeflag: tar.TypeFifo, Name: "etc/os-release", Mode: 0o644},
			&tar.Header{Typeflag: tar.TypeReg, Name: "etc/hostname", Size: 1, Mode: 0o644})
		r = a.runWithin(t, limit, nil, "import", osr)
		if want := "osr-fifo.tar: cannot name the image after its os-release: /etc/os-release is a named pipe (FIFO), not a regular file; give a name"; r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("import with a FIFO os-release: want exit 1 saying %q, got %s", want, r)
		}
		a.assertNothingLeft(t, before)
		// With a name, os-release is not read: the FIFO is just content.
		a.mustRun(t, "import", osr, "fifo-osr")
	})
}

// TestImportFromStalledStdinStopsOnSignal: `stepexec import -` reading a
// pipe that never delivers stops on SIGTERM like any other command.
func TestImportFromStalledStdinStopsOnSignal(t *testing.T) {
	forEachAccount(t, func(t *testing.T, a *account) {
		before := a.storeLayers(t)
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := a.command(ctx, "import", "-", "stalled")
		cmd.Stdin = pr
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pr.Close()
		pw.Write([]byte("not a whole tar header")) // then nothing more, and no EOF
		time.Sleep(3 * time.Second)                // into the read (rootless: after the re-exec)
		sent := time.Now()
		cmd.Process.Signal(syscall.SIGTERM)
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGTERM) {
			t.Errorf("import - after SIGTERM: %v, want exit %d\n%s", err, 128+int(syscall.SIGTERM), stderr.String())
		}
		if took := time.Since(sent); took > 20*time.Second {
			t.Errorf("took %v to stop after SIGTERM", took)
		}
		a.assertNothingLeft(t, before)
	})
}

// TestImportSparseTarball: a tiny tarball holding a 1 TiB sparse file is
// refused before anything is written (it cannot fit), and one holding a
// 1 GiB sparse file imports with its holes kept.
func TestImportSparseTarball(t *testing.T) {
	_, err := exec.LookPath("tar")
	testenv.Need(t, err == nil, "GNU tar, to make sparse archives")
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		before := a.storeLayers(t)
		sparseTar := func(name string, size int64) string {
			dir := filepath.Join(a.work, name+"-src")
			if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := os.Create(filepath.Join(dir, "big"))
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte("end"), size-3)
			f.Close()
			p := filepath.Join(a.work, name)
			if out, err := exec.Command("tar", "--sparse", "--format=pax", "-cf", p, "-C", dir, "etc", "big").CombinedOutput(); err != nil {
				t.Fatalf("tar: %v %s", err, out)
			}
			os.RemoveAll(dir)
			a.own(t, p)
			return p
		}
		huge := sparseTar("huge.tar", 1<<40)
		r := a.runWithin(t, 2*time.Minute, nil, "import", huge, "huge")
		if want := `entry "big": 1TiB of content (1099511627776 bytes), more than the`; r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("1 TiB sparse import: want exit 1 saying %q, got %s", want, r)
		}
		a.assertNothingLeft(t, before)

		gib := sparseTar("gib.tar", 1<<30)
		a.mustRun(t, "import", gib, "gib")
		// The layer's file in the store, as containers/storage keeps it.
		files, _ := filepath.Glob(filepath.Join(a.root, "overlay", "*", "diff", "big"))
		if len(files) != 1 {
			t.Fatalf("want the imported file once in the store's layers, found %v", files)
		}
		var st unix.Stat_t
		if err := unix.Stat(files[0], &st); err != nil {
			t.Fatal(err)
		}
		if st.Size != 1<<30 || st.Blocks*512 > 1<<20 {
			t.Errorf("imported 1 GiB sparse file: size %d, %d bytes allocated: its holes were written", st.Size, st.Blocks*512)
		}
		data, err := os.ReadFile(files[0])
		if err != nil || !bytes.HasSuffix(data, []byte("end")) || bytes.Count(data, []byte{0}) != 1<<30-3 {
			t.Errorf("imported sparse file content is wrong (%v)", err)
		}
	})
}

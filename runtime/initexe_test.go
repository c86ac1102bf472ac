package runtime

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stepexec/stepexec/internal/testenv"
	"github.com/stepexec/stepexec/runtime/stepinit"
)

// smallInitEnv names a prebuilt cmd/stepexec-init for the tests (scripts/
// test.sh sets it for the run as the test user, which has no Go toolchain);
// without it the tests build one.
const smallInitEnv = "STEPEXEC_SMALL_INIT"

var smallInitOnce struct {
	sync.Once
	exe []byte
	err string
}

// smallInitBinary returns cmd/stepexec-init's bytes, as scripts/build.sh
// appends them.
func smallInitBinary(t testing.TB) []byte {
	t.Helper()
	smallInitOnce.Do(func() {
		path := os.Getenv(smallInitEnv)
		if path == "" {
			if _, err := exec.LookPath("go"); err != nil {
				smallInitOnce.err = "neither $" + smallInitEnv + " nor a Go toolchain to build cmd/stepexec-init"
				return
			}
			dir, err := os.MkdirTemp("", "stepexec-init-")
			if err != nil {
				smallInitOnce.err = err.Error()
				return
			}
			defer os.RemoveAll(dir)
			path = filepath.Join(dir, "stepexec-init")
			tags, _ := os.ReadFile("../scripts/build-tags")
			cmd := exec.Command("go", "build", "-tags", strings.TrimSpace(string(tags)), "-o", path, "../cmd/stepexec-init")
			if out, err := cmd.CombinedOutput(); err != nil {
				smallInitOnce.err = "building cmd/stepexec-init: " + err.Error() + ": " + string(out)
				return
			}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			smallInitOnce.err = err.Error()
		}
		smallInitOnce.exe = b
	})
	testenv.Need(t, smallInitOnce.err == "", "%s", smallInitOnce.err)
	return smallInitOnce.exe
}

// withSmallInit makes r's steps run the small init.
func withSmallInit(t testing.TB, r *Runtime) *Runtime {
	r.initExe = smallInit{exe: smallInitBinary(t)}
	return r
}

// TestSmallInitRuns: a step given the small init runs it (the builder
// checks /proc/PID/exe before it lets the step go on), and the command
// inherits neither it nor the filter.
func TestSmallInitRuns(t *testing.T) {
	rootfs := sharedRootfs(t)
	for name, r := range map[string]*Runtime{
		"precompiled filter": withSmallInit(t, newRuntime(t)),
		"libcontainer's":     withSmallInit(t, slowRuntime(t)),
	} {
		t.Run(name, func(t *testing.T) {
			res, out, errOut := run(t, r, rootfs, nil, `ls /proc/self/fd; grep -E '^Seccomp:' /proc/self/status`)
			if res.ExitCode != 0 || out != "0\n1\n2\n3\nSeccomp:\t2\n" {
				t.Errorf("exit %d (%s), got\n%s", res.ExitCode, errOut, out)
			}
			if r.initExe.file == nil {
				t.Fatalf("no sealed init: %v", r.initExe.err)
			}
		})
	}
}

// TestSmallInitRefused: an init that cannot run what it was given fails
// the step, which runs nothing and leaves nothing behind.
func TestSmallInitRefused(t *testing.T) {
	rootfs, r := sharedRootfs(t), newRuntime(t)
	r.initExe = smallInit{exe: []byte("#!/no/such/interpreter\n")}
	var stderr bytes.Buffer
	_, err := r.Run(context.Background(), Spec{ID: "refused", Rootfs: rootfs, Args: []string{"touch", "/ran"}, Env: alpineEnv, Stderr: &stderr})
	if err == nil {
		t.Fatal("the step ran")
	}
	if !strings.Contains(stderr.String(), "executing the small init") {
		t.Errorf("err %v; stderr %q does not say why", err, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(rootfs, "ran")); err == nil {
		t.Error("the command ran")
	}
	if ents, _ := os.ReadDir(r.containers); len(ents) != 0 {
		t.Errorf("state left behind: %v", ents)
	}
}

// withTrailer writes a file of prefix, then init, then the trailer
// scripts/build.sh appends (size: the size it states).
func withTrailer(t *testing.T, prefix, init []byte, size int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "binary")
	b := append(append(bytes.Clone(prefix), init...), fmt.Sprintf("\n%s%016x\n", initTrailerMagic, size)...)
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAppendedInit: the small init appended to a binary is found from its
// trailer and copied into the memfd whole; a file without one has none,
// and a damaged trailer or a non-ELF init is an error.
func TestAppendedInit(t *testing.T) {
	prefix := bytes.Repeat([]byte("the builder's own ELF image "), 1000)
	init := append([]byte("\x7fELF"), bytes.Repeat([]byte{0xab, 0xcd, 0xef}, 5000)...)
	path := withTrailer(t, prefix, init, len(init))
	src, err := appendedInit(path)
	if err != nil || src == nil {
		t.Fatalf("appendedInit = %v, %v", src, err)
	}
	if src.Offset != int64(len(prefix)) || src.Size != len(init) {
		t.Errorf("found %d bytes at %d, want %d at %d", src.Size, src.Offset, len(init), len(prefix))
	}
	f, err := stepinit.SealedMemfd("test", nil, false, src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, err := io.ReadAll(f); err != nil || !bytes.Equal(got, init) {
		t.Errorf("memfd holds %d bytes (%v), want the %d of the init", len(got), err, len(init))
	}

	none := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(none, prefix, 0o755); err != nil {
		t.Fatal(err)
	}
	if src, err := appendedInit(none); src != nil || err != nil {
		t.Errorf("a file without a trailer: %+v, %v", src, err)
	}
	for name, path := range map[string]string{
		"size past the start": withTrailer(t, prefix, init, len(prefix)+len(init)+1),
		"not ELF":             withTrailer(t, prefix, init[1:], len(init)-1),
		"wrong size":          withTrailer(t, prefix, init, len(init)-3),
	} {
		if src, err := appendedInit(path); err == nil {
			t.Errorf("%s: %+v, no error", name, src)
		}
	}
}

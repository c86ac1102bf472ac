package runtime

import (
	"bytes"
	"context"
	_ "embed"
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
// embeds them.
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

// binaryData is in the test binary's data, embedded as the small init is
// in stepexec's.
//
//go:embed initexe.go
var binaryData []byte

// TestFileSourceOfBinaryData: bytes of the binary's own data are found in
// its file, and the memfd copied from there holds them.
func TestFileSourceOfBinaryData(t *testing.T) {
	src := fileSource(binaryData)
	if src == nil {
		t.Fatal("the binary's data not found in its file")
	}
	f, err := stepinit.SealedMemfd("test", binaryData, false, src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, binaryData) {
		t.Errorf("copy: %d bytes, %v", len(got), err)
	}
	if fileSource(bytes.Clone(binaryData)) != nil {
		t.Error("a heap copy taken for file data")
	}
}

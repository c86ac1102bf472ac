package integration

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// prebuiltEnv names a directory of the helper programs the suite would
// otherwise compile (stepexec-probe, embed, euid), built ahead of time by
// scripts/prebuild-tests.sh: in a VM without KVM compiling them in place
// takes many minutes.
const prebuiltEnv = "STEPEXEC_PREBUILT"

// helperProgram puts the helper program name into binDir, where every test
// user can read it, and returns its path: copied from $STEPEXEC_PREBUILT
// when that is set, else built by `go build ARGS` in the repository with
// the extra environment env.
func helperProgram(name string, env []string, args ...string) (string, error) {
	out := filepath.Join(binDir, name)
	if dir := os.Getenv(prebuiltEnv); dir != "" {
		if err := copyExecutable(filepath.Join(dir, name), out); err != nil {
			return "", fmt.Errorf("%s=%s: %w", prebuiltEnv, dir, err)
		}
		return out, nil
	}
	cmd := exec.Command("go", append([]string{"build", "-o", out}, args...)...)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return out, nil
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// TestHelperProgramPrebuilt: with STEPEXEC_PREBUILT set, the helper comes
// from that directory (no compiler involved) and a missing one is an error
// naming the directory.
func TestHelperProgramPrebuilt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tool"), []byte("#!/bin/sh\necho prebuilt\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(prebuiltEnv, dir)
	t.Setenv("PATH", "") // no go on PATH: a build attempt would fail
	got, err := helperProgram("tool", nil, "./nowhere")
	if err != nil {
		t.Fatal(err)
	}
	if got != filepath.Join(binDir, "tool") {
		t.Errorf("path %s, want it in binDir %s", got, binDir)
	}
	defer os.Remove(got)
	if out, err := exec.Command(got).Output(); err != nil || string(out) != "prebuilt\n" {
		t.Errorf("running the copy: %q %v", out, err)
	}
	if _, err := helperProgram("missing", nil, "./nowhere"); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("missing prebuilt helper: %v, want an error naming %s", err, dir)
	}
}

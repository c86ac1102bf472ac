package fsat

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func openDir(t *testing.T, dir string) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func TestRemoveAll(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{"tree/a/b/c", "tree/empty"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"file", "tree/f", "tree/a/b/c/f"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("y"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{"link": outside, "tree/a/out": outside, "tree/a/outfile": filepath.Join(outside, "keep")} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	fd := openDir(t, dir)
	for _, name := range []string{"missing", "file", "link", "tree"} {
		if err := RemoveAll(fd, name); err != nil {
			t.Fatalf("RemoveAll(%s): %v", name, err)
		}
		if _, err := os.Lstat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", name, err)
		}
	}
	if data, err := os.ReadFile(filepath.Join(outside, "keep")); err != nil || string(data) != "x" {
		t.Errorf("a symlink's target was touched: %q, %v", data, err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

func TestSetTimes(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("target", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	fd := openDir(t, dir)
	times := func(name string) (atime, mtime time.Time) {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
		return time.Unix(st.Atim.Unix()), time.Unix(st.Mtim.Unix())
	}
	_, targetMtime := times("target")
	a, m := time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC), time.Date(2002, 3, 4, 5, 6, 7, 8, time.UTC)
	for _, tc := range []struct {
		name         string
		atime, mtime time.Time
		wantA, wantM time.Time
	}{
		{"both", a, m, a, m},
		{"no atime", time.Time{}, m, m, m},
		{"no mtime: left alone", a, time.Time{}, m, m},
	} {
		if err := SetTimes(fd, "link", tc.atime, tc.mtime); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if gotA, gotM := times("link"); !gotA.Equal(tc.wantA) || !gotM.Equal(tc.wantM) {
			t.Errorf("%s: link times %v %v, want %v %v", tc.name, gotA, gotM, tc.wantA, tc.wantM)
		}
	}
	if _, m := times("target"); !m.Equal(targetMtime) {
		t.Errorf("the symlink was followed: target mtime %v, was %v", m, targetMtime)
	}
	if err := SetTimes(fd, "missing", a, m); err == nil {
		t.Error("SetTimes on a missing name succeeded")
	}
}

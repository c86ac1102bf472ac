package stepinit

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFilterFile(t *testing.T) {
	f := &Filter{ViaSeccomp: true, Flags: unix.SECCOMP_FILTER_FLAG_LOG, Program: bytes.Repeat([]byte{6, 0, 0, 0, 0, 0, 0xff, 0x7f}, 3)}
	file, err := f.SealedFile()
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	got, ok, err := ReadFilterFile(int(file.Fd()))
	if err != nil || !ok || got.ViaSeccomp != f.ViaSeccomp || got.Flags != f.Flags || !bytes.Equal(got.Program, f.Program) {
		t.Errorf("read back %+v, %v, %v; want %+v", got, ok, err, f)
	}
	if _, err := file.WriteAt([]byte("x"), 20); err == nil {
		t.Error("the filter file can be written to")
	}
	// What is not a sealed filter file is not taken for one.
	unsealed, err := unix.MemfdCreate("unsealed", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(unsealed)
	if _, err := unix.Write(unsealed, append([]byte(filterMagic), make([]byte, 16)...)); err != nil {
		t.Fatal(err)
	}
	for name, fd := range map[string]int{"stdin": 0, "unsealed memfd": unsealed, "closed fd": 1000} {
		if _, ok, err := ReadFilterFile(fd); ok || err != nil {
			t.Errorf("%s taken for a filter file (ok %v, err %v)", name, ok, err)
		}
	}
}

func TestIsInitExe(t *testing.T) {
	exe, err := SealedMemfd(ExeName, []byte("x"), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer exe.Close()
	if !IsInitExe(int(exe.Fd())) {
		t.Error("the sealed init memfd is not taken for one")
	}
	unsealed, err := unix.MemfdCreate(ExeName, unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(unsealed)
	other, err := SealedMemfd("other", []byte("x"), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for name, fd := range map[string]int{"stdin": 0, "unsealed memfd": unsealed, "another sealed memfd": int(other.Fd()), "closed fd": 1000} {
		if IsInitExe(fd) {
			t.Errorf("%s taken for the init", name)
		}
	}
}

// TestSealedMemfdFromSource: the bytes are copied from where the source
// says they are; a source holding other bytes is not trusted.
func TestSealedMemfdFromSource(t *testing.T) {
	want := bytes.Repeat([]byte("0123456789abcdef"), 1000) // more than two 4 KB samples
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, append([]byte("prefix"), want...), 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(head, tail []byte) bool {
		return bytes.Equal(head, want[:4096]) && bytes.Equal(tail, want[len(want)-4096:])
	}
	for name, src := range map[string]Source{
		"right offset": {Path: path, Offset: 6, Check: check},
		"wrong offset": {Path: path, Offset: 3, Check: check},
		"no such file": {Path: path + ".missing", Check: check},
	} {
		f, err := SealedMemfd("test", want, false, &src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: read back %d bytes (%v), want the %d given", name, len(got), err, len(want))
		}
	}
}

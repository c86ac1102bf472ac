package rootfs

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.podman.io/storage/pkg/reexec"
	"go.podman.io/storage/pkg/unshare"
)

// TestMain puts an unprivileged run into a user namespace with the caller's
// subuid range (uid 0 there), as the stepexec binary does, so that chown to
// image ids works.
func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	if os.Getuid() != 0 {
		unshare.MaybeReexecUsingUserNamespace(false)
	}
	os.Exit(m.Run())
}

// inInitUserNS reports whether the test runs as real root (not in a user namespace).
func inInitUserNS(t *testing.T) bool {
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data))
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
}

// ent describes one tar entry to build.
type ent struct {
	typ          byte
	name, link   string
	body         string
	mode         int64
	uid, gid     int
	major, minor int64
	mtime        time.Time
	pax          map[string]string
}

var testTime = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

func dirE(name string) ent        { return ent{typ: tar.TypeDir, name: name, mode: 0o755} }
func fileE(name, body string) ent { return ent{typ: tar.TypeReg, name: name, body: body, mode: 0o644} }
func symE(name, target string) ent {
	return ent{typ: tar.TypeSymlink, name: name, link: target, mode: 0o777}
}
func linkE(name, target string) ent { return ent{typ: tar.TypeLink, name: name, link: target} }

func mktar(t *testing.T, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		mt := e.mtime
		if mt.IsZero() {
			mt = testTime
		}
		h := &tar.Header{
			Typeflag: e.typ, Name: e.name, Linkname: e.link, Mode: e.mode,
			Uid: e.uid, Gid: e.gid, Devmajor: e.major, Devminor: e.minor,
			ModTime: mt, PAXRecords: e.pax, Format: tar.FormatPAX,
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %s: %v", e.name, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// snapshot records everything under base except the subtree skip: type,
// mode, owner, size, link count, times, symlink target and content hash.
func snapshot(t *testing.T, base, skip string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := []string{fmt.Sprintf("%v uid=%d gid=%d nlink=%d size=%d mtime=%v", fi.Mode(), st.Uid, st.Gid, st.Nlink, fi.Size(), fi.ModTime())}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			desc = append(desc, "->"+l)
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(data)
			desc = append(desc, hex.EncodeToString(h[:8]))
		}
		out[p] = strings.Join(desc, " ")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// outsideUnchanged fails the test if two snapshots of what lies outside
// the root differ: an entry changed, went or came.
func outsideUnchanged(t *testing.T, before, after map[string]string) {
	t.Helper()
	for p, d := range before {
		if after[p] != d {
			t.Errorf("outside the root changed: %s: %q -> %q", p, d, after[p])
		}
	}
	for p, d := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("created outside the root: %s (%s)", p, d)
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(data)
}

func lstat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatalf("lstat: %v", err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

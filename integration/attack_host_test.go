package integration

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The rows of the attack table that act on the host side.

// tarMember is one entry of a hostile tarball.
type tarMember struct {
	name     string
	kind     byte // tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeBlock, …
	target   string
	contents string
	mode     int64 // default 0644
	major    int64 // of a device node
	minor    int64
}

func reg(name, contents string) tarMember {
	return tarMember{name: name, kind: tar.TypeReg, contents: contents}
}
func symlink(name, target string) tarMember {
	return tarMember{name: name, kind: tar.TypeSymlink, target: target}
}
func hardlink(name, target string) tarMember {
	return tarMember{name: name, kind: tar.TypeLink, target: target}
}

// hostileTarballs imports one tarball per trick, each aimed at a host
// directory the account may write (holding a file "victim"), and checks
// the directory afterwards: same entries, victim unchanged and not linked
// from anywhere.
func hostileTarballs(t *testing.T, e *attackEnv) outcome {
	a := e.a
	target := filepath.Join(a.work, "hostile-target")
	victim := filepath.Join(target, "victim")
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(victim, []byte("original\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{target, victim} {
		if err := os.Chown(p, a.uid, a.gid); err != nil {
			t.Fatal(err)
		}
	}
	up := strings.Repeat("../", 16)
	rel := strings.TrimPrefix(target, "/")
	tricks := []struct {
		name    string
		members []tarMember
	}{
		{"dotdot", []tarMember{reg(up+rel+"/dotdot", "x")}},
		{"absolute", []tarMember{reg(target+"/absolute", "x")}},
		{"symlink-absolute", []tarMember{symlink("lnk", target), reg("lnk/via-symlink", "x")}},
		{"symlink-relative", []tarMember{symlink("lnk", up+rel), reg("lnk/via-symlink", "x")}},
		{"symlink-chain", []tarMember{symlink("a", "."), symlink("b", "a/a/a/"+up), reg("b/"+rel+"/via-chain", "x")}},
		{"symlink-to-file", []tarMember{symlink("victim", victim), reg("victim", "overwritten\n")}},
		{"hardlink-absolute", []tarMember{hardlink("hl", victim), reg("hl", "overwritten\n")}},
		{"hardlink-dotdot", []tarMember{hardlink("hl", up+rel+"/victim"), reg("hl", "overwritten\n")}},
	}
	refused := 0
	for i, tr := range tricks {
		path := filepath.Join(a.work, fmt.Sprintf("hostile-%d.tar", i))
		if err := writeTarMembers(path, tr.members); err != nil {
			t.Fatal(err)
		}
		os.Chown(path, a.uid, a.gid)
		name := "stepexec-hostile-" + tr.name
		r := a.run(t, "import", path, name)
		t.Logf("hostile tarball %s: import exit %d %s", tr.name, r.code, strings.TrimSpace(r.stderr))
		if r.code != 0 {
			refused++
			continue
		}
		a.mustRun(t, "rmi", name)
	}
	if bad := hostDirChanges(target, victim); bad != "" {
		return outcome{verdictEscaped, bad}
	}
	return outcome{verdictBlocked, fmt.Sprintf("nothing written outside the store (%d tricks: %d refused, %d stored inside it)",
		len(tricks), refused, len(tricks)-refused)}
}

// hostDirChanges says what differs in target from just "victim", unchanged.
func hostDirChanges(target, victim string) string {
	entries, err := os.ReadDir(target)
	if err != nil {
		return fmt.Sprintf("reading the host directory: %v", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "victim" {
		return fmt.Sprintf("the host directory now holds %v", names)
	}
	b, err := os.ReadFile(victim)
	if err != nil || !bytes.Equal(b, []byte("original\n")) {
		return fmt.Sprintf("the host file changed: %q %v", b, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(victim, &st); err != nil || st.Nlink != 1 {
		return fmt.Sprintf("the host file has %d links: one is in the store", st.Nlink)
	}
	return ""
}

func writeTarMembers(path string, members []tarMember) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := writeMembers(tw, members); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func writeMembers(tw *tar.Writer, members []tarMember) error {
	for _, m := range members {
		mode := m.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: m.name, Typeflag: m.kind, Linkname: m.target, Mode: mode,
			Devmajor: m.major, Devminor: m.minor, ModTime: time.Unix(0, 0)}
		if m.kind == tar.TypeReg {
			h.Size = int64(len(m.contents))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write([]byte(m.contents)); err != nil {
			return err
		}
	}
	return nil
}

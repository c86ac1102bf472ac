package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// capV2 returns setcap-style security.capability bytes (VFS_CAP_REVISION_2,
// effective bit set) granting the capabilities in the low word mask.
func capV2(mask uint32) []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|0x1) // revision 2 | effective
	binary.LittleEndian.PutUint32(b[4:], mask)           // permitted, low
	return b
}

// capNetRaw is cap_net_raw=ep, as `setcap cap_net_raw+ep` writes it.
var capNetRaw = capV2(1 << 13)

var fixedTime = time.Date(2024, 1, 2, 3, 4, 5, 678_000_000, time.UTC)

// buildFakeUpper lays out what an overlay upper dir can hold, including
// overlay's own markers (a 0/0 whiteout, user.overlay.* xattrs).
func buildFakeUpper(t *testing.T, upper string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mkdir := func(p string, mode os.FileMode) {
		must(os.Mkdir(filepath.Join(upper, p), mode))
		must(os.Chmod(filepath.Join(upper, p), mode))
	}
	write := func(p, content string, mode os.FileMode) {
		must(os.WriteFile(filepath.Join(upper, p), []byte(content), mode))
		must(os.Chmod(filepath.Join(upper, p), mode))
	}
	mkdir("bin", 0o755)
	write("bin/ping", "ping binary\n", 0o755)
	must(unix.Lsetxattr(filepath.Join(upper, "bin/ping"), "security.capability", capNetRaw, 0))
	write("bin/su", "su binary\n", 0o755)
	must(unix.Chmod(filepath.Join(upper, "bin/su"), 0o4755)) // os.FileMode has no 0o4000
	mkdir("etc", 0o755)
	write("etc/hosts", "127.0.0.1 localhost\n", 0o644)
	must(os.Chown(filepath.Join(upper, "etc/hosts"), 1000, 1000))
	must(os.Link(filepath.Join(upper, "etc/hosts"), filepath.Join(upper, "etc/hosts.same")))
	// A whiteout: what overlay leaves after `rm /etc/motd`.
	must(unix.Mknod(filepath.Join(upper, "etc/motd"), unix.S_IFCHR|0o000, 0))
	must(unix.Mknod(filepath.Join(upper, "etc/issue"), unix.S_IFCHR|0o000, 0))
	mkdir("etc/apk", 0o755)
	must(unix.Lsetxattr(filepath.Join(upper, "etc/apk"), "user.overlay.opaque", []byte("y"), 0))
	write("etc/apk/world", "busybox\n", 0o644)
	write("etc/copied", "copied up\n", 0o600)
	must(unix.Lsetxattr(filepath.Join(upper, "etc/copied"), "user.overlay.origin", []byte{0, 1, 2}, 0))
	must(unix.Lsetxattr(filepath.Join(upper, "etc/copied"), "user.mime", []byte("text/plain"), 0))
	mkdir("etc/notopaque", 0o700)
	must(unix.Lsetxattr(filepath.Join(upper, "etc/notopaque"), "user.overlay.opaque", []byte("n"), 0))
	must(os.Chown(filepath.Join(upper, "etc/notopaque"), 33, 44))
	mkdir("lib", 0o755)
	must(os.Symlink("../bin/ping", filepath.Join(upper, "lib/ping")))
	must(unix.Mkfifo(filepath.Join(upper, "lib/fifo"), 0o640))
	mkdir("lib/a.b", 0o755) // sorts before "lib/a/" bytewise, after it in tree order
	mkdir("lib/a", 0o755)
	write("lib/a/x", "", 0o644)
	long := "usr/" + strings.Repeat("very-long-directory-name-", 5)
	must(os.MkdirAll(filepath.Join(upper, long), 0o755))
	write(filepath.Join(long, strings.Repeat("f", 120)), "long\n", 0o644)
	must(os.Chmod(filepath.Join(upper, "usr"), 0o755))
	// A socket: tar cannot hold it, so it is skipped.
	l, err := net.Listen("unix", filepath.Join(upper, "lib/sock"))
	must(err)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	// Fixed mtimes (with a fraction, which the differ drops), deepest first.
	var paths []string
	must(filepath.Walk(upper, func(p string, _ os.FileInfo, err error) error {
		paths = append(paths, p)
		return err
	}))
	slices.Reverse(paths)
	ts := []unix.Timespec{unix.NsecToTimespec(fixedTime.UnixNano()), unix.NsecToTimespec(fixedTime.UnixNano())}
	for _, p := range paths {
		must(unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// listing renders a layer tar as text, one entry a line.
func listing(t *testing.T, r io.Reader) string {
	t.Helper()
	var b strings.Builder
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%c %s mode=%04o %d:%d size=%d mtime=%s", h.Typeflag, h.Name, h.Mode, h.Uid, h.Gid, h.Size, h.ModTime.UTC().Format(time.RFC3339Nano))
		if h.Linkname != "" {
			fmt.Fprintf(&b, " link=%s", h.Linkname)
		}
		if h.Uname != "" || h.Gname != "" || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			fmt.Fprintf(&b, " UNEXPECTED(uname=%q gname=%q atime=%v ctime=%v)", h.Uname, h.Gname, h.AccessTime, h.ChangeTime)
		}
		var keys []string
		for k := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%x", strings.TrimPrefix(k, "SCHILY."), h.PAXRecords[k])
		}
		if len(content) > 0 {
			fmt.Fprintf(&b, " sha256=%x", sha256.Sum256(content))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestWriteLayerTarGolden(t *testing.T) {
	upper := t.TempDir()
	buildFakeUpper(t, upper)

	var out bytes.Buffer
	files, nbytes, err := WriteLayerTar(&out, upper)
	if err != nil {
		t.Fatalf("WriteLayerTar: %v", err)
	}
	got := listing(t, bytes.NewReader(out.Bytes()))

	golden := filepath.Join("testdata", "layer.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("listing differs from %s (run with -update to accept)\n--- got\n%s--- want\n%s", golden, got, want)
	}

	if lines := strings.Count(got, "\n"); files != lines {
		t.Errorf("files = %d, tar has %d entries", files, lines)
	}
	// Regular-file content: ping, su, hosts (once: the other name is a
	// link), apk/world, copied, lib/a/x (empty), the long one.
	wantBytes := int64(len("ping binary\n") + len("su binary\n") + len("127.0.0.1 localhost\n") +
		len("busybox\n") + len("copied up\n") + len("long\n"))
	if nbytes != wantBytes {
		t.Errorf("bytes = %d, want %d", nbytes, wantBytes)
	}

	// Deterministic: the same tree gives the same bytes.
	var again bytes.Buffer
	if _, _, err := WriteLayerTar(&again, upper); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), again.Bytes()) {
		t.Error("two runs over the same tree gave different tars")
	}
}

// TestWriteLayerTarDevice checks device nodes keep their numbers. Device
// nodes cannot be created in a user namespace, so /dev/null is bind-mounted
// onto a file: lstat then reports the character device 1:3 in every mode.
func TestWriteLayerTarDevice(t *testing.T) {
	upper := t.TempDir()
	p := filepath.Join(upper, "null")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("/dev/null", p, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mounting /dev/null onto %s: %v", p, err)
	}
	defer func() {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", p, err)
		}
	}()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	files, _, err := WriteLayerTar(&out, upper)
	if err != nil {
		t.Fatal(err)
	}
	h, err := tar.NewReader(&out).Next()
	if err != nil {
		t.Fatal(err)
	}
	if files != 1 || h.Name != "null" || h.Typeflag != tar.TypeChar || h.Devmajor != 1 || h.Devminor != 3 ||
		h.Uid != int(st.Uid) || h.Mode != int64(st.Mode&0o7777) {
		t.Errorf("got files=%d %q type %c %d:%d uid %d mode %o; want 1 \"null\" char 1:3 uid %d mode %o",
			files, h.Name, h.Typeflag, h.Devmajor, h.Devminor, h.Uid, h.Mode, st.Uid, st.Mode&0o7777)
	}
}

func TestIsOverlayXattr(t *testing.T) {
	for name, want := range map[string]bool{
		"trusted.overlay.opaque":  true,
		"user.overlay.origin":     true,
		"user.overlayish":         false,
		"security.capability":     false,
		"trusted.md5":             false,
		"user.mime":               false,
		"security.overlay.opaque": true,
	} {
		if got := isOverlayXattr(name); got != want {
			t.Errorf("isOverlayXattr(%q) = %v, want %v", name, got, want)
		}
	}
}

// afterCalls is a context whose Err reports cancellation from its n+1st call
// on: a build cancelled while the differ copies a file.
type afterCalls struct {
	context.Context
	n int
}

func (c *afterCalls) Err() error {
	if c.n == 0 {
		return context.Canceled
	}
	c.n--
	return nil
}

// TestWriteLayerTarStopsMidFile: Ctrl-C during the commit of a step that
// wrote a large file does not wait for the whole file to be copied.
func TestWriteLayerTarStopsMidFile(t *testing.T) {
	upper := t.TempDir()
	big := bytes.Repeat([]byte("x"), 8<<20)
	if err := os.WriteFile(filepath.Join(upper, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_, n, err := writeLayerTar(&afterCalls{Context: context.Background(), n: 2}, &out, upper)
	if !errors.Is(err, context.Canceled) || n >= int64(len(big)) {
		t.Fatalf("WriteLayerTar cancelled mid-file: copied %d of %d bytes, err %v", n, len(big), err)
	}
}

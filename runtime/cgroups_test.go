package runtime

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/runtime/userns"
)

func realRoot() bool { return os.Geteuid() == 0 && !userns.InUserNamespace() }

// deviceProbe opens each path for reading and for writing and prints
// "PATH r:ok|r:ERROR w:ok|w:ERROR".
const deviceProbe = `
for d in "$@"; do
	r=$( (exec 3<"$d") 2>&1 && echo ok); w=$( (exec 3>"$d") 2>&1 && echo ok)
	echo "$d r:${r##*: } w:${w##*: }"
done`

// TestDeviceCgroup checks, as real root, that a step can open only the
// devices docker allows even when its rootfs holds other device nodes and
// is not mounted nodev (here a plain directory): its cgroup denies the rest.
func TestDeviceCgroup(t *testing.T) {
	if !realRoot() {
		t.Skip("steps get a device cgroup only as real root (rootless, every device node but /dev's bind mounts is on a nodev mount)")
	}
	dir := plainAlpine(t)
	nodes := []struct {
		name       string
		mode       uint32
		major, min uint32
	}{
		{"kmsg", unix.S_IFCHR, 1, 11},
		{"loop0", unix.S_IFBLK, 7, 0},
		{"kvm", unix.S_IFCHR, 10, 232},
		{"null", unix.S_IFCHR, 1, 3}, // allowed, also when it is the layer's own
	}
	if err := os.Mkdir(filepath.Join(dir, "devs"), 0o755); err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, n := range nodes {
		p := filepath.Join(dir, "devs", n.name)
		if err := unix.Mknod(p, n.mode|0o666, int(unix.Mkdev(n.major, n.min))); err != nil {
			t.Fatal(err)
		}
		args = append(args, "/devs/"+n.name)
	}
	args = append(args, "/dev/null", "/dev/zero", "/dev/full", "/dev/urandom", "/dev/random")
	r := newRuntime(t)
	res, out, errOut := run(t, r, stepView(t, dir), func(s *Spec) {
		s.Args = append([]string{"sh", "-c", deviceProbe, "sh"}, args...)
	}, "")
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %s%s", res.ExitCode, out, errOut)
	}
	const denied = "Operation not permitted" // the device cgroup's EPERM
	want := "/devs/kmsg r:" + denied + " w:" + denied + "\n" +
		"/devs/loop0 r:" + denied + " w:" + denied + "\n" +
		"/devs/kvm r:" + denied + " w:" + denied + "\n" +
		"/devs/null r:ok w:ok\n" +
		"/dev/null r:ok w:ok\n/dev/zero r:ok w:ok\n/dev/full r:ok w:ok\n/dev/urandom r:ok w:ok\n/dev/random r:ok w:ok\n"
	if out != want {
		t.Errorf("the step opened:\n%s\nwant\n%s", out, want)
	}
}

// TestRemoveStaleCgroups checks, as real root, that New removes the
// stepexec-<pid> cgroups (with their step cgroups) of processes that are
// gone, and keeps those of live ones.
func TestRemoveStaleCgroups(t *testing.T) {
	if !realRoot() {
		t.Skip("only real root makes cgroups")
	}
	var roots []string
	for _, h := range []string{"pids", "devices", ""} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", h, "cgroup.procs")); err == nil {
			roots = append(roots, filepath.Join("/sys/fs/cgroup", h))
		}
	}
	if len(roots) == 0 {
		t.Fatal("no cgroup hierarchy at /sys/fs/cgroup")
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		live.Process.Kill()
		live.Wait()
	}()
	name := func(pid int) string { return cgroupPrefix + strconv.Itoa(pid) }
	var deadDirs, liveDirs []string
	for _, root := range roots {
		d, l := filepath.Join(root, name(dead.Process.Pid)), filepath.Join(root, name(live.Process.Pid))
		for _, c := range []string{filepath.Join(d, "step1"), filepath.Join(d, "step2"), l} {
			if err := os.MkdirAll(c, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		deadDirs, liveDirs = append(deadDirs, d), append(liveDirs, l)
	}
	defer func() {
		for _, d := range append(deadDirs, liveDirs...) {
			removeCgroupTree(d)
		}
	}()

	newRuntime(t)
	for _, d := range deadDirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("cgroup of a dead stepexec still there: %s (%v)", d, err)
		}
	}
	for _, d := range liveDirs {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("cgroup of a live process removed: %s (%v)", d, err)
		}
	}
	if t.Failed() {
		out, _ := exec.Command("sh", "-c", "ls -d /sys/fs/cgroup/*/"+cgroupPrefix+"*").CombinedOutput()
		t.Log(strings.TrimSpace(string(out)))
	}
}

package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stepexec/stepexec/internal/testenv"

	"github.com/opencontainers/runc/libcontainer/exeseal"
	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/runtime/userns"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	// As real root both return at once; as a user Enter re-execs the test
	// binary into the outer namespace and runs the tests there.
	if err := userns.Preflight(userns.SubIDs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := userns.Enter(userns.SubIDs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// alpineRootfs unpacks the Alpine minirootfs into a fresh temp dir and
// returns it as a step sees it (stepView).
func alpineRootfs(t testing.TB) string {
	t.Helper()
	return stepView(t, plainAlpine(t))
}

// plainAlpine unpacks the Alpine minirootfs into a fresh temp dir.
func plainAlpine(t testing.TB) string {
	t.Helper()
	alpineTarball := testenv.AlpineTarball(t)
	dir := t.TempDir()
	if out, err := exec.Command("tar", "-xzf", alpineTarball, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("untar %s: %v: %s", alpineTarball, err, out)
	}
	traversable(t, dir)
	return dir
}

// shift is the process's userns.Shift (nil unless real root).
func shift(t testing.TB) *userns.Shift {
	t.Helper()
	s, err := userns.StepShift()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stepView returns dir as a ForStep snapshot.Store.Prepare would give it to a step: as
// real root an idmapped clone of it (on-disk uid 0 is the step's root)
// attached at a new temp dir and detached at cleanup; otherwise dir.
func stepView(t testing.TB, dir string) string {
	t.Helper()
	sh := shift(t)
	if sh == nil {
		return dir
	}
	clone, err := sh.Clone(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer clone.Close()
	target := t.TempDir()
	traversable(t, target)
	if err := unix.MoveMount(int(clone.Fd()), "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		t.Fatalf("attaching an idmapped clone of %s at %s: %v", dir, target, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", target, err)
		}
		assertNotMounted(t, target)
	})
	return target
}

// traversable gives others search permission on dir and its ancestors up
// to the temp dir (t.TempDir makes them 0700): as real root, a step's init
// resolves the rootfs path as a host uid that owns none of them.
func traversable(t testing.TB, dir string) {
	t.Helper()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
			t.Fatal(err)
		}
	}
}

// assertNotMounted fails the test if anything is mounted at or below dir.
func assertNotMounted(t testing.TB, dir string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			t.Errorf("still mounted: %s", line)
		}
	}
}

func newRuntime(t testing.TB) *Runtime {
	t.Helper()
	r, err := New(Options{StateDir: filepath.Join(t.TempDir(), "state")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(r.stateDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("state dir %s still there after Close: %v", r.stateDir, err)
		}
	})
	return r
}

var alpineEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}

// run runs sh -c script as root in rootfs and returns exit code and output.
func run(t *testing.T, r *Runtime, rootfs string, mod func(*Spec), script string) (Result, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	spec := Spec{
		ID:     fmt.Sprintf("t%d", time.Now().UnixNano()),
		Rootfs: rootfs,
		Args:   []string{"sh", "-c", script},
		Env:    alpineEnv,
		Stdout: &stdout,
		Stderr: &stderr,
	}
	if mod != nil {
		mod(&spec)
	}
	res, err := r.Run(context.Background(), spec)
	if err != nil {
		t.Fatalf("Run(%q): %v (stderr: %s)", script, err, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(r.containers, spec.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("container state dir left behind: %v", err)
	}
	if left, _ := filepath.Glob("/sys/fs/cgroup/*/" + cgroupParent); len(left) != 0 {
		t.Errorf("cgroups left behind: %v", left)
	}
	return res, stdout.String(), stderr.String()
}

// sharedRootfs is one unpacked Alpine for the tests that do not modify it.
func sharedRootfs(t *testing.T) string {
	t.Helper()
	return alpineRootfs(t)
}

func TestExitCodesAndStreams(t *testing.T) {
	rootfs, r := sharedRootfs(t), newRuntime(t)
	tests := []struct {
		script, stdout, stderr string
		code                   int
	}{
		{"true", "", "", 0},
		{"exit 3", "", "", 3},
		{"echo out; echo err >&2", "out\n", "err\n", 0},
	}
	for _, tt := range tests {
		res, out, errOut := run(t, r, rootfs, nil, tt.script)
		if res.ExitCode != tt.code || out != tt.stdout || errOut != tt.stderr {
			t.Errorf("%q: exit %d stdout %q stderr %q, want %d %q %q", tt.script, res.ExitCode, out, errOut, tt.code, tt.stdout, tt.stderr)
		}
		if res.Setup <= 0 || res.Run <= 0 || res.Teardown <= 0 {
			t.Errorf("%q: timings not measured: %+v", tt.script, res)
		}
	}
}

func TestMissingCommand(t *testing.T) {
	rootfs, r := sharedRootfs(t), newRuntime(t)
	_, err := r.Run(context.Background(), Spec{ID: "missing", Rootfs: rootfs, Args: []string{"no-such-cmd"}, Env: alpineEnv})
	if err == nil || !strings.Contains(err.Error(), "no-such-cmd") {
		t.Errorf("Run of a missing command: err = %v, want an error naming it", err)
	}
	if _, err := os.Stat(filepath.Join(r.containers, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir left behind after a failed start: %v", err)
	}
}

func TestEnvCwdUser(t *testing.T) {
	rootfs, r := sharedRootfs(t), newRuntime(t)
	if _, err := os.Stat(filepath.Join(rootfs, "work")); err == nil {
		t.Fatal("/work unexpectedly in alpine")
	}
	res, out, errOut := run(t, r, rootfs, func(s *Spec) {
		s.Env = append(s.Env, "FOO=bar baz")
		s.Cwd = "/work/sub"
		s.User = User{UID: 1000, GID: 1000, AdditionalGIDs: []uint32{10, 20}}
	}, `echo "$FOO"; pwd; id -u; id -g; id -G`)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %s", res.ExitCode, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("output %q", out)
	}
	if lines[0] != "bar baz" || lines[1] != "/work/sub" || lines[2] != "1000" || lines[3] != "1000" {
		t.Errorf("env/cwd/uid/gid = %q", lines[:4])
	}
	groups := strings.Fields(lines[4])
	slices.Sort(groups)
	if want := []string{"10", "1000", "20"}; !slices.Equal(groups, want) {
		t.Errorf("id -G = %q, want %v", lines[4], want)
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "work/sub")); err != nil || !fi.IsDir() {
		t.Errorf("cwd not created in the rootfs: %v", err)
	}
}

func TestHostnameAndHosts(t *testing.T) {
	rootfs, r := sharedRootfs(t), newRuntime(t)
	before, err := os.ReadFile(filepath.Join(rootfs, "etc/hosts"))
	if err != nil {
		t.Fatal(err)
	}
	_, out, _ := run(t, r, rootfs, func(s *Spec) { s.Hostname = "builder7" }, `hostname; cat /etc/hostname; grep -c "127.0.0.1.*builder7" /etc/hosts`)
	if out != "builder7\nbuilder7\n1\n" {
		t.Errorf("got %q", out)
	}
	_, out, _ = run(t, r, rootfs, nil, `hostname`)
	if h := strings.TrimSpace(out); len(h) != 12 {
		t.Errorf("default hostname %q is not a 12-character id", h)
	}
	after, _ := os.ReadFile(filepath.Join(rootfs, "etc/hosts"))
	if !bytes.Equal(before, after) {
		t.Errorf("the image's /etc/hosts changed: %q", after)
	}
}

func TestNetworkOnlyLoopbackUp(t *testing.T) {
	rootfs, r := sharedRootfs(t), newRuntime(t)
	res, out, errOut := run(t, r, rootfs, nil, `ls /sys/class/net; ip -o link; ping -c1 -W1 127.0.0.1 >/dev/null && echo ping-ok`)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %s%s", res.ExitCode, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || lines[0] != "lo" || !strings.Contains(lines[1], "lo: <LOOPBACK,UP") || lines[2] != "ping-ok" {
		t.Errorf("network: %q", out)
	}
}

func TestSecurity(t *testing.T) {
	rootfs, r := sharedRootfs(t), newRuntime(t)
	script := `
grep CapEff /proc/self/status
grep CapBnd /proc/self/status
if test -e /proc/kcore; then echo kcore=$(wc -c < /proc/kcore); else echo kcore=0; fi
echo timer_list=$(wc -c < /proc/timer_list) $(grep -c ' /proc/timer_list ' /proc/self/mountinfo)
echo x > /proc/sys/kernel/hostname 2>/dev/null && echo procsys=rw || echo procsys=ro
touch /sys/x 2>/dev/null && echo sys=rw || echo sys=ro
awk '$5=="/proc/sys"||$5=="/sys"{split($6,o,",");print $5, o[1]}' /proc/self/mountinfo
`
	res, out, errOut := run(t, r, rootfs, nil, script)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %s%s", res.ExitCode, out, errOut)
	}
	want := "CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nkcore=0\ntimer_list=0 1\nprocsys=ro\nsys=ro\n/sys ro\n/proc/sys ro\n"
	if out != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	// Non-root user: no effective capabilities, same bounding set.
	_, out, _ = run(t, r, rootfs, func(s *Spec) { s.User = User{UID: 1000, GID: 1000} }, `grep -E 'Cap(Eff|Bnd)' /proc/self/status`)
	if out != "CapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\n" {
		t.Errorf("user 1000 caps: %q", out)
	}
}

func TestExitCodeOfSignal(t *testing.T) {
	err := exec.Command("sh", "-c", "kill -TERM $$").Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("sh killing itself: %v", err)
	}
	if got := exitCode(ee.ProcessState); got != 128+15 {
		t.Errorf("exitCode = %d, want 143", got)
	}
}

// stepProcesses lists host pids whose command line contains marker.
func stepProcesses(t testing.TB, marker string) []string {
	t.Helper()
	var pids []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), marker) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

func TestBackgroundProcessKilled(t *testing.T) {
	rootfs, r := sharedRootfs(t), newRuntime(t)
	res, _, errOut := run(t, r, rootfs, nil, `sleep 100.123 & setsid sleep 100.123 & nohup sleep 100.123 >/dev/null 2>&1 & sleep 0.1; pgrep -f 100.123 | wc -l`)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %s", res.ExitCode, errOut)
	}
	if left := stepProcesses(t, "100.123"); len(left) != 0 {
		t.Errorf("processes of the step survived Run: %v", left)
	}
}

func TestCancel(t *testing.T) {
	rootfs, r := sharedRootfs(t), newRuntime(t)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	go func() {
		<-started
		time.Sleep(100 * time.Millisecond)
		cancel()
	}()
	spec := Spec{ID: "cancel", Rootfs: rootfs, Args: []string{"sh", "-c", "sleep 100.456 & sleep 100.456"}, Env: alpineEnv,
		OnStart: func() { close(started) }}
	begin := time.Now()
	_, err := r.Run(ctx, spec)
	elapsed := time.Since(begin)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if elapsed > time.Second+100*time.Millisecond {
		t.Errorf("cancelled Run took %v", elapsed)
	}
	if left := stepProcesses(t, "100.456"); len(left) != 0 {
		t.Errorf("processes survived cancel: %v", left)
	}
	ents, err := os.ReadDir(r.containers)
	if err != nil || len(ents) != 0 {
		t.Errorf("state left in %s: %v %v", r.containers, ents, err)
	}
	ents, err = os.ReadDir(r.files)
	if err != nil || len(ents) != 0 {
		t.Errorf("files left in %s: %v %v", r.files, ents, err)
	}
}

func TestNoMountpointStubs(t *testing.T) {
	rootfs, r := alpineRootfs(t), newRuntime(t)
	for _, p := range []string{"etc/hosts", "etc/hostname", "proc", "sys"} {
		if err := os.Remove(filepath.Join(rootfs, p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(rootfs, "dev")); err != nil {
		t.Fatal(err)
	}
	res, out, errOut := run(t, r, rootfs, nil, `test -r /proc/self/status && test -c /dev/null && hostname`)
	if res.ExitCode != 0 || out == "" {
		t.Fatalf("exit %d: %s%s", res.ExitCode, out, errOut)
	}
	for _, p := range []string{"etc/hosts", "etc/hostname", "etc/resolv.conf", "proc", "sys", "dev"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("mountpoint stub /%s left in the rootfs: %v", p, err)
		}
	}
}

// TestOverlayUpperHasOnlyStepChanges runs on an overlay like the builder
// and checks the upper dir holds exactly what the step wrote.
func TestOverlayUpperHasOnlyStepChanges(t *testing.T) {
	lower, r := plainAlpine(t), newRuntime(t)
	base := t.TempDir()
	upper, work, merged := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	traversable(t, merged)
	// As real root the upper dir must be idmapped like the lower (as
	// a ForStep snapshot.Store.Prepare mounts it); the bases are clones of both dirs.
	upperBase, lowerView := base, lower
	if sh := shift(t); sh != nil {
		lowerView = stepView(t, lower)
		upperBase = stepView(t, base)
		upper, work = filepath.Join(upperBase, "upper"), filepath.Join(upperBase, "work")
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lowerView, upper, work)
	if userns.InUserNamespace() {
		opts += ",userxattr"
	}
	mount := func() error { return unix.Mount("overlay", merged, "overlay", 0, opts) }
	var err error
	if sh := shift(t); sh != nil {
		err = sh.AsStepRoot(mount)
	} else {
		err = mount()
	}
	if err != nil {
		testenv.Need(t, false, "overlay mount: %v", err)
	}
	defer func() {
		if err := unix.Unmount(merged, 0); err != nil {
			t.Errorf("unmount %s: %v", merged, err)
		}
	}()
	res, _, errOut := run(t, r, merged, func(s *Spec) { s.Cwd = "/root" }, `echo hi > /f && hostname >/dev/null`)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %s", res.ExitCode, errOut)
	}
	ents, err := os.ReadDir(filepath.Join(base, "upper"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		// The /etc/resolv.conf mountpoint made and removed copies /etc up,
		// empty: snapshot's Commit leaves such a directory out.
		if sub, _ := os.ReadDir(filepath.Join(base, "upper", e.Name())); e.Name() == "etc" && e.IsDir() && len(sub) == 0 {
			continue
		}
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"f"}) {
		t.Errorf("upper dir holds %v, want only [f]", names)
	}
	// What the step's root wrote is stored as uid 0, as real root too.
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(base, "upper", "f"), &st); err != nil || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("/f in the upper dir: owner %d:%d (%v), want 0:0", st.Uid, st.Gid, err)
	}
}

// TestHostRootNotMapped checks, as real root, that a step's user namespace
// maps its ids to root's subordinate range and never host uid 0: on a
// rootfs that is not idmapped, a file of host root's with mode 0600 is
// nobody's to the step's root, which can neither read nor take it. On the
// idmapped view of the same tree (as steps get it) the step's root owns
// what uid 0 owns on disk, and what it writes is stored as uid 0.
func TestHostRootNotMapped(t *testing.T) {
	sh := shift(t)
	if sh == nil {
		t.Skip("steps are shifted only as real root; in stepexec's user namespace host root is not mapped at all")
	}
	plain, r := plainAlpine(t), newRuntime(t)
	if err := os.WriteFile(filepath.Join(plain, "secret"), []byte("host root only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The step's root could not make a mountpoint in this /etc of host
	// root's (never so on a snapshot, which is idmapped): give it one.
	if err := os.WriteFile(filepath.Join(plain, "etc/resolv.conf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res, out, errOut := run(t, r, plain, nil, `cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c %u:%g /secret /etc/passwd; cat /secret 2>/dev/null || echo read-denied; chown 0 /secret 2>/dev/null || echo chown-denied; echo x 2>/dev/null >/etc/x || echo write-denied`)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %s%s", res.ExitCode, out, errOut)
	}
	uid, gid := sh.Root()
	want := fmt.Sprintf("0 %d 65536\n0 %d 65536\n0\n65534:65534\n65534:65534\nread-denied\nchown-denied\nwrite-denied\n", uid, gid)
	if got := normalizeMaps(out); got != want {
		t.Errorf("on a plain rootfs got\n%s\nwant\n%s", got, want)
	}
	if _, err := os.Stat(filepath.Join(plain, "etc/x")); err == nil {
		t.Error("the step's root created /etc/x in a tree of host root's")
	}

	view := stepView(t, plain)
	res, out, errOut = run(t, r, view, nil, `stat -c %u:%g /secret /etc/passwd; cat /secret; echo x >/etc/x; mkdir /home/u; chown 1000:1001 /home/u`)
	if res.ExitCode != 0 {
		t.Fatalf("on the idmapped view: exit %d: %s%s", res.ExitCode, out, errOut)
	}
	if want := "0:0\n0:0\nhost root only\n"; out != want {
		t.Errorf("on the idmapped view got %q, want %q", out, want)
	}
	for p, want := range map[string][2]uint32{"etc/x": {0, 0}, "home/u": {1000, 1001}} {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(plain, p), &st); err != nil || st.Uid != want[0] || st.Gid != want[1] {
			t.Errorf("/%s on disk: owner %d:%d (%v), want %d:%d", p, st.Uid, st.Gid, err, want[0], want[1])
		}
	}
}

// normalizeMaps squeezes the blanks of id map lines.
func normalizeMaps(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		nl := strings.HasSuffix(line, "\n")
		b.WriteString(strings.Join(strings.Fields(line), " "))
		if nl {
			b.WriteString("\n")
		}
	}
	return b.String()
}

func BenchmarkRunTrue(b *testing.B) {
	rootfs, r := alpineRootfs(b), newRuntime(b)
	ctx := context.Background()
	var setup, running, teardown time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		res, err := r.Run(ctx, Spec{ID: fmt.Sprintf("b%d", i), Rootfs: rootfs, Args: []string{"true"}, Env: alpineEnv})
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("exit %d, %v", res.ExitCode, err)
		}
		setup, running, teardown = setup+res.Setup, running+res.Run, teardown+res.Teardown
	}
	b.StopTimer()
	b.ReportMetric(float64(setup.Nanoseconds())/float64(b.N), "setup-ns/op")
	b.ReportMetric(float64(running.Nanoseconds())/float64(b.N), "run-ns/op")
	b.ReportMetric(float64(teardown.Nanoseconds())/float64(b.N), "teardown-ns/op")
	perStep := float64(b.Elapsed().Nanoseconds()) / float64(b.N)

	// Reference: the floor of namespace creation with util-linux unshare.
	const n = 50
	begin := time.Now()
	for range n {
		if out, err := exec.Command("unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork", "true").CombinedOutput(); err != nil {
			b.Fatalf("unshare: %v: %s", err, out)
		}
	}
	ref := float64(time.Since(begin).Nanoseconds()) / n
	b.ReportMetric(ref, "unshare-ns/op")
	b.ReportMetric(perStep/ref, "x-unshare")
}

// TestSeccomp checks that steps run under Docker's default seccomp profile:
// syscalls it denies to the default capability set fail with EPERM, even
// those the kernel would allow (a nested user namespace), while what builds
// do works.
func TestSeccomp(t *testing.T) {
	rootfs, r := sharedRootfs(t), newRuntime(t)
	tests := []struct {
		name, script, want string
		user               User
	}{
		// Without no_new_privs, as docker runs RUN steps (setuid binaries work).
		{"filter installed", `grep -E '^(NoNewPrivs|Seccomp(_filters)?):' /proc/self/status`, "NoNewPrivs:\t0\nSeccomp:\t2\nSeccomp_filters:\t1\n", User{}},
		{"unshare user ns denied", `unshare -U true 2>&1; echo "exit $?"`, "unshare: unshare(0x10000000): Operation not permitted\nexit 1\n", User{}},
		{"unshare user ns denied to non-root", `unshare -U true 2>&1; echo "exit $?"`, "unshare: unshare(0x10000000): Operation not permitted\nexit 1\n", User{UID: 1000, GID: 1000}},
		{"file ops, chown, users", `mkdir -p /a/b && echo x > /a/b/f && ln -s f /a/b/l && ln /a/b/f /a/h && mv /a/h /a/g && chmod 4755 /a/g && chown 1000:1000 /a/b/f && adduser -D -u 2000 bob && chown bob /a/g && rm -r /a && echo ok`, "ok\n", User{}},
		{"ping", `ping -c1 -W1 127.0.0.1 >/dev/null && echo ok`, "ok\n", User{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, out, errOut := run(t, r, rootfs, func(s *Spec) { s.User = tt.user }, tt.script)
			if res.ExitCode != 0 || out != tt.want {
				t.Errorf("exit %d, stdout %q (stderr %q), want %q", res.ExitCode, out, errOut, tt.want)
			}
		})
	}
}

// TestBinarySealed checks that as real root the binary libcontainer
// re-executes as each step's init already is a sealed memfd (userns.Enter
// made it one), so libcontainer neither copies it nor mounts an overlay
// per step. Rootless, the builder runs from its binary and each init is
// sealed by an overlay (TestInitSealing).
func TestBinarySealed(t *testing.T) {
	if userns.InUserNamespace() {
		t.Skip("rootless: TestInitSealing covers how inits are sealed")
	}
	if !exeseal.IsSelfExeCloned() {
		exe, _ := os.Readlink("/proc/self/exe")
		t.Errorf("/proc/self/exe is %s, not a sealed memfd: every step would seal or copy the binary", exe)
	}
}

package integration

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/testenv"
)

// Tests of stepexec run as real root: what other users of the host can
// reach of a build, and what its steps can reach of the host.

// rootAccount is root's account: the test needs to run as root.
func rootAccount(t *testing.T) *account {
	t.Helper()
	testenv.NeedRoot(t, "to test stepexec run as root (scripts/test.sh in CI runs the suite as root)")
	testenv.Need(t, fileExists(tarball), "Alpine tarball %s (set STEPEXEC_ALPINE_TARBALL)", tarball)
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return newAccount(t, u)
}

// bgBuild is a build running in the background.
type bgBuild struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder // stderr: --progress=plain and the steps' output
	seen chan struct{}   // closed once ready was printed
	done chan error
}

// startBuild starts `build --progress=plain ARGS…` as a and returns once
// a step printed ready.
func (a *account) startBuild(t *testing.T, ctx context.Context, ready string, args ...string) *bgBuild {
	t.Helper()
	args = append([]string{"build", "--progress=plain"}, args...)
	b := &bgBuild{cmd: a.command(ctx, args...), seen: make(chan struct{}), done: make(chan error, 1)}
	pr, pw := io.Pipe()
	b.cmd.Stderr = pw
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := b.cmd.Wait()
		pw.Close()
		b.done <- err
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			b.mu.Lock()
			b.out.WriteString(sc.Text() + "\n")
			b.mu.Unlock()
			if !once && strings.Contains(sc.Text(), ready) {
				once = true
				close(b.seen)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case <-b.seen:
	case err := <-b.done:
		t.Fatalf("the build ended (%v) before a step printed %q:\n%s", err, ready, b.output())
	case <-time.After(2 * time.Minute):
		b.cmd.Process.Kill()
		t.Fatalf("no step printed %q:\n%s", ready, b.output())
	}
	return b
}

func (b *bgBuild) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.String()
}

// wait returns the build's exit code.
func (b *bgBuild) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-b.done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(2 * time.Minute):
		b.cmd.Process.Kill()
		t.Fatalf("the build did not end:\n%s", b.output())
		return -1
	}
}

// stepProcesses returns the pids of the processes whose command line holds
// stepMarker (a step's shell) and of their children.
func stepProcesses(t *testing.T) []int {
	t.Helper()
	var shells, all []int
	children := map[int][]int{}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(p))
		cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		if strings.Contains(string(cmdline), stepMarker) && !strings.Contains(string(cmdline), "--progress") {
			shells = append(shells, pid)
		}
		status, _ := os.ReadFile(filepath.Join(p, "status"))
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "PPid:"); ok {
				ppid, _ := strconv.Atoi(strings.TrimSpace(v))
				children[ppid] = append(children[ppid], pid)
			}
		}
	}
	for _, s := range shells {
		all = append(append(all, s), children[s]...)
	}
	return all
}

// overlayMounts returns the mount points of the overlays in pid's mount
// table.
func overlayMounts(t *testing.T, pid int) []string {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		for i := 6; i+1 < len(f); i++ {
			if f[i] == "-" && f[i+1] == "overlay" {
				out = append(out, f[4])
			}
		}
	}
	return out
}

// probeScript stats each path given and prints "PATH: ok" or "PATH: the
// error"; a path named exec:PATH is run instead.
const probeScript = `
for p in "$@"; do
	case $p in
	exec:*) p=${p#exec:}; if out=$("$p" 2>&1); then echo "exec:$p: ran as uid $out"; else echo "exec:$p: ${out##*: }"; fi ;;
	*) if out=$(stat -c %A -- "$p" 2>&1); then echo "$p: ok"; else echo "$p: ${out##*: }"; fi ;;
	esac
done`

// asUser runs /bin/sh -c script as the user named, with LC_ALL=C.
func asUser(t *testing.T, name, script string, args ...string) string {
	t.Helper()
	u, err := user.Lookup(name)
	testenv.Need(t, err == nil, "user %s (scripts/setup-host.sh creates it)", name)
	all := append([]string{"--reuid=" + u.Uid, "--regid=" + u.Gid, "--clear-groups", "--", "/bin/sh", "-c", script, "sh"}, args...)
	cmd := exec.Command("setpriv", all...)
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("probe as %s: %v\n%s", name, err, out)
	}
	return string(out)
}

// importExtendedAlpine writes the Alpine minirootfs plus extra entries
// (added at the end) as a plain tarball in a's work dir and imports it as
// name.
func (a *account) importExtendedAlpine(t *testing.T, name string, extra []tarFile) {
	t.Helper()
	in, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(a.work, name+".tar")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	tw := tar.NewWriter(out)
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range extra {
		f.hdr.ModTime = time.Unix(1700000000, 0)
		f.hdr.Size = int64(len(f.content))
		if err := tw.WriteHeader(&f.hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.content); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	a.mustRun(t, "import", path, name)
}

// tarFile is an entry importExtendedAlpine adds.
type tarFile struct {
	hdr     tar.Header
	content []byte
}

// staticEuid builds testdata/euid, a static program that prints its
// effective uid: it runs on the host as well as in an Alpine step.
func staticEuid(t *testing.T) []byte {
	t.Helper()
	bin, err := helperProgram("euid", []string{"CGO_ENABLED=0"}, "./integration/testdata/euid")
	if err != nil {
		t.Fatalf("building a static euid program: %v", err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRootStepOutOfOtherUsersReach runs, as real root, a RUN that makes a
// setuid-root copy of a static program printing its euid, and while it
// runs probes as another, unprivileged user (stepexec-nosub): its mount
// table shows nothing of the build, and no path into the store's stepexec/,
// layer and staging dirs, the snapshot, its upper and work dirs, the steps'
// roots, or the builder's or the step's /proc/PID/root leads anywhere
// (EACCES), so the setuid file can be neither found nor run. The store's
// parents are searchable and the graph root a+x, as podman --userns=auto
// leaves it: the store's own modes must hold. After the step the store
// still works.
func TestRootStepOutOfOtherUsersReach(t *testing.T) {
	a := rootAccount(t)
	_, err := exec.LookPath("setpriv")
	testenv.Need(t, err == nil, "setpriv (util-linux)")
	a.importExtendedAlpine(t, "euid", []tarFile{{hdr: tar.Header{Name: "euid", Mode: 0o755, Typeflag: tar.TypeReg}, content: staticEuid(t)}})
	if err := os.Chmod(filepath.Dir(a.root), 0o711); err != nil {
		t.Fatal(err)
	}
	ctxDir := a.writeContext(t, "suid", "FROM euid\nRUN cp /euid /suid && chmod 4755 /suid && /suid && echo suid-$((1+1))-ready && sleep 1000 || true; echo "+stepMarker+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := a.startBuild(t, ctx, "suid-2-ready", "-t", "suid", ctxDir)
	builder := b.cmd.Process.Pid

	if fi, err := os.Stat(a.root); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("graph root during a RUN: %v %v, want containers/storage's 0700", fi.Mode(), err)
	}
	if err := os.Chmod(a.root, 0o711); err != nil { // podman's --userns=auto layout
		t.Fatal(err)
	}
	rootfs, key := a.stepRootfs(t, builder)
	probes := a.pathsToStep(t, builder, rootfs, key)
	out := asUser(t, "stepexec-nosub", probeScript, probes...)
	t.Logf("as stepexec-nosub:\n%s", out)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasSuffix(line, ": Permission denied") {
			t.Errorf("as stepexec-nosub %s", line)
		}
	}
	if n := strings.Count(out, "\n"); n != len(probes) {
		t.Errorf("%d probe results for %d probes:\n%s", n, len(probes), out)
	}
	mounts := asUser(t, "stepexec-nosub", "cat /proc/self/mountinfo")
	for _, line := range strings.Split(mounts, "\n") {
		if strings.Contains(line, a.root) || strings.Contains(line, filepath.Dir(rootfs)) || strings.Contains(line, key) {
			t.Errorf("another user's mount table shows the build: %s", line)
		}
	}

	killStepSleep(t) // the RUN's `|| true` then succeeds
	if code := b.wait(t); code != 0 {
		t.Fatalf("build exit %d:\n%s", code, b.output())
	}
	if _, err := os.Lstat(filepath.Dir(rootfs)); !os.IsNotExist(err) {
		t.Errorf("the steps' roots mount point %s is still there: %v", filepath.Dir(rootfs), err)
	}
	// The store works on: the layer holds the file as the image's root's.
	ctxDir = a.writeContext(t, "suid-after", "FROM suid\nRUN test -u /suid && test \"$(stat -c %u:%g /suid)\" = 0:0\n")
	if r := a.run(t, "build", ctxDir); r.code != 0 {
		t.Errorf("building on the setuid layer: %s", r)
	}
}

// stepRootfs returns the mount point of the running step's rootfs in the
// builder's mount namespace and the step's snapshot key. That namespace
// also holds copies of whatever was mounted on the host when it started:
// the step's rootfs is in its steps' roots (or, as stepexec mounted it
// before, in the store). The setuid file must be in it.
func (a *account) stepRootfs(t *testing.T, builder int) (rootfs, key string) {
	t.Helper()
	var merged []string
	for _, m := range overlayMounts(t, builder) {
		if strings.HasPrefix(m, fmt.Sprintf("/run/stepexec/%d-", builder)) || strings.HasPrefix(m, a.root+"/") {
			merged = append(merged, m)
		}
	}
	if len(merged) != 1 {
		t.Fatalf("the builder has step overlays %v, want one", merged)
	}
	rootfs, key = merged[0], filepath.Base(merged[0])
	if key == "merged" { // the layout before steps' roots
		key = filepath.Base(filepath.Dir(rootfs))
	}
	if fi, err := os.Stat(fmt.Sprintf("/proc/%d/root%s/suid", builder, rootfs)); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Fatalf("the step's setuid file is not in its rootfs %s: %v %v", rootfs, fi, err)
	}
	return rootfs, key
}

// pathsToStep lists the probes (see probeScript) of every way into the
// running step's files an attacker could try: the store's dirs, the
// snapshot's, the steps' roots, the builder's and the step's /proc/PID
// links, and running the setuid file through each.
func (a *account) pathsToStep(t *testing.T, builder int, rootfs, key string) []string {
	t.Helper()
	owners, _ := filepath.Glob(filepath.Join(a.root, "stepexec", "snapshots", "o*"))
	layers, _ := filepath.Glob(filepath.Join(a.root, "overlay", "[0-9a-f]*"))
	if len(owners) != 1 || len(layers) == 0 {
		t.Fatalf("store has owner dirs %v and layer dirs %v", owners, layers)
	}
	snap := filepath.Join(owners[0], key)
	paths := []string{
		filepath.Join(a.root, "stepexec") + "/.",
		filepath.Join(a.root, "stepexec", "snapshots") + "/.",
		owners[0] + "/.", snap + "/.", snap + "/upper/.", snap + "/upper/suid", snap + "/work/.", snap + "/merged/.",
		layers[0] + "/.", layers[0] + "/diff/.",
		filepath.Join(a.root, "overlay", "staging") + "/.",
		filepath.Dir(rootfs) + "/.", rootfs + "/suid",
		fmt.Sprintf("/proc/%d/root/.", builder), fmt.Sprintf("/proc/%d/root%s/suid", builder, rootfs), fmt.Sprintf("/proc/%d/cwd/.", builder),
	}
	steps := stepProcesses(t)
	if len(steps) == 0 {
		t.Fatal("found no process of the step")
	}
	for _, pid := range steps {
		paths = append(paths, fmt.Sprintf("/proc/%d/root/suid", pid), fmt.Sprintf("/proc/%d/cwd/.", pid))
	}
	var probes []string
	for _, p := range paths {
		probes = append(probes, p)
		if strings.HasSuffix(p, "/suid") {
			probes = append(probes, "exec:"+p)
		}
	}
	return probes
}

// killStepSleep kills the `sleep` of the running step (waiting for it to
// start, if need be).
func killStepSleep(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, pid := range stepProcesses(t) {
			if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.HasPrefix(string(cmdline), "sleep\x00") {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					return
				}
			}
		}
	}
	t.Fatal("the step's sleep never ran")
}

// deviceProbe is a RUN command that opens each path for reading and for
// writing, and prints "PROBE PATH r:ok|r:ERROR w:ok|w:ERROR" (or "PROBE
// PATH missing").
func deviceProbe(paths []string) string {
	return "for d in " + strings.Join(paths, " ") + `; do if [ ! -e "$d" ]; then echo "PROBE $d missing"; continue; fi; ` +
		`r=$( (exec 3<"$d") 2>&1 && echo ok); w=$( (exec 3>"$d") 2>&1 && echo ok); echo "PROBE $d r:${r##*: } w:${w##*: }"; done`
}

// TestBaseImageDeviceNodesOpenNothing imports a base image holding device
// nodes (the kernel log, a loop block device, /dev/kvm and the hardware
// RNG when the host has them, and a null device of its own) and checks
// that a RUN can open none of them, while /dev's devices docker allows
// work. As real root the import creates the nodes for real (checked);
// rootless it cannot, so nothing opens either.
func TestBaseImageDeviceNodesOpenNothing(t *testing.T) {
	type devNode struct {
		name         string
		typ          byte
		major, minor int64
	}
	nodes := []devNode{{"kmsg", tar.TypeChar, 1, 11}, {"loop0", tar.TypeBlock, 7, 0}, {"null", tar.TypeChar, 1, 3}}
	for _, n := range []devNode{{"kvm", tar.TypeChar, 10, 232}, {"hwrng", tar.TypeChar, 10, 183}} {
		if fileExists("/dev/" + n.name) { // what the host has, a step must not reach
			nodes = append(nodes, n)
		}
	}
	extra := []tarFile{{hdr: tar.Header{Name: "devs/", Mode: 0o755, Typeflag: tar.TypeDir}}}
	for _, n := range nodes {
		extra = append(extra, tarFile{hdr: tar.Header{Name: "devs/" + n.name, Mode: 0o666, Typeflag: n.typ, Devmajor: n.major, Devminor: n.minor}})
	}
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importExtendedAlpine(t, "devbase", extra)
		if !a.rootless() {
			// The premise: as root the nodes are in the layer.
			for _, n := range nodes {
				p, _ := filepath.Glob(filepath.Join(a.root, "overlay", "*", "diff", "devs", n.name))
				var st syscall.Stat_t
				if len(p) != 1 || syscall.Lstat(p[0], &st) != nil || int64(unix.Major(st.Rdev)) != n.major || int64(unix.Minor(st.Rdev)) != n.minor {
					t.Fatalf("the import did not create devs/%s %d:%d (%v)", n.name, n.major, n.minor, p)
				}
			}
		}
		want := map[string]string{
			"/dev/null": "r:ok w:ok", "/dev/zero": "r:ok w:ok", "/dev/full": "r:ok w:ok",
			"/dev/random": "r:ok w:ok", "/dev/urandom": "r:ok w:ok", "/dev/ptmx": "r:ok w:ok",
			// Allowed, but a RUN has no controlling terminal (as with docker).
			"/dev/tty": "r:No such device or address w:No such device or address",
		}
		for _, n := range nodes {
			want["/devs/"+n.name] = "r:Permission denied w:Permission denied"
			if a.rootless() {
				want["/devs/"+n.name] = "missing" // mknod is refused rootless: skipped
			}
		}
		ctxDir := a.writeContext(t, "devices", "FROM devbase\nRUN "+deviceProbe(slices.Sorted(maps.Keys(want)))+"\n")
		r := a.mustRun(t, "build", "--progress=plain", ctxDir)
		got := map[string]string{}
		for _, line := range strings.Split(r.stderr, "\n") {
			if _, rest, ok := strings.Cut(line, " PROBE "); ok {
				path, res, _ := strings.Cut(rest, " ")
				got[path] = res
			}
		}
		for p, w := range want {
			if got[p] != w {
				t.Errorf("RUN opening %s: %q, want %q", p, got[p], w)
			}
		}
		if len(got) != len(want) {
			t.Errorf("probed %v, want %d devices:\n%s", got, len(want), r.stderr)
		}
	})
}

// TestKilledBuildLeavesNothingAfterNextCommand kills (SIGKILL) a build
// while a RUN runs: the step's processes die with it, and what it could
// not clean up (its snapshot; as real root its cgroups, stepexec-<pid> in
// every hierarchy, and the steps' roots mount point) is gone after the
// next command.
func TestKilledBuildLeavesNothingAfterNextCommand(t *testing.T) {
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		before := a.storeLayers(t)
		ctxDir := a.writeContext(t, "killed", "FROM alpine\nRUN echo cg-$((1+1))-ready && sleep 1000; echo "+stepMarker+"\n")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		b := a.startBuild(t, ctx, "cg-2-ready", ctxDir)
		pid := b.cmd.Process.Pid
		// v1: in every hierarchy; v2 (Debian 12's guest): at the root.
		cgroups := stepCgroups([]int{pid})
		roots, _ := filepath.Glob(fmt.Sprintf("/run/stepexec/%d-*", pid))
		if !a.rootless() && len(cgroups) == 0 {
			t.Fatalf("a running real-root step has no cgroups stepexec-%d", pid)
		}
		b.cmd.Process.Signal(syscall.SIGKILL)
		b.wait(t)
		deadline := time.Now().Add(5 * time.Second)
		for len(a.processes(t)) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if left := a.processes(t); len(left) > 0 {
			t.Errorf("processes of the killed build still running 5s later: %v", left)
		}
		if left := stepCgroups([]int{pid}); len(left) != len(cgroups) {
			t.Fatalf("the killed build's cgroups: %v, then %v", cgroups, left)
		}
		a.mustRun(t, "images")
		if left := stepCgroups([]int{pid}); len(left) != 0 {
			t.Errorf("cgroups of the killed build left after the next command: %v", left)
		}
		for _, r := range roots {
			if _, err := os.Lstat(r); !os.IsNotExist(err) {
				t.Errorf("steps' roots mount point %s left after the next command: %v", r, err)
			}
		}
		a.assertNothingLeft(t, before)
	})
}

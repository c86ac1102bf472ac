// Package integration runs the real stepexec binary end to end: as an
// unprivileged user with a subuid/subgid range (the product's main case)
// and as root. Run as root, the suite drops to STEPEXEC_TEST_USER (default
// stepexec-ci) with setpriv for the unprivileged runs; run as a normal user
// it runs everything as that user.
//
// With STEPEXEC_REQUIRE_ALL=1 (CI) a missing prerequisite fails the suite
// instead of skipping it.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stepexec/stepexec/internal/testenv"
)

var (
	binary  string // the stepexec binary under test
	tarball string // the Alpine minirootfs
	repo    string // the repository root
	binDir  string // readable by every test user; removed at the end
)

func TestMain(m *testing.M) {
	code, err := setup()
	if err != nil {
		os.RemoveAll(binDir)
		fmt.Fprintln(os.Stderr, "integration setup:", err)
		os.Exit(1)
	}
	if code < 0 {
		code = m.Run()
	}
	os.RemoveAll(binDir)
	os.Exit(code)
}

func setup() (int, error) {
	wd, err := os.Getwd()
	if err != nil {
		return 1, err
	}
	repo = filepath.Dir(wd)
	// Files every test user must read go here.
	binDir, err = os.MkdirTemp("", "stepexec-it-bin-")
	if err != nil {
		return 1, err
	}
	os.Chmod(binDir, 0o755)
	if b := os.Getenv("STEPEXEC_BINARY"); b != "" {
		binary = b
	} else {
		// Build into a directory every test user can read.
		binary = filepath.Join(binDir, "stepexec")
		// As users get it: with the small init appended.
		cmd := exec.Command("scripts/build.sh", binary)
		cmd.Dir = repo
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return 1, fmt.Errorf("building stepexec: %w", err)
		}
	}
	tarball = os.Getenv("STEPEXEC_ALPINE_TARBALL")
	if tarball == "" {
		tarball = filepath.Join(repo, "..", "shared", "alpine", testenv.AlpineName)
	}
	if os.Getuid() == 0 && fileExists(tarball) {
		// The test user may not be able to reach the tarball's directory
		// (a checkout under /root): give it a copy it can read.
		data, err := os.ReadFile(tarball)
		if err != nil {
			return 1, err
		}
		tarball = filepath.Join(filepath.Dir(binary), filepath.Base(tarball))
		if err := os.WriteFile(tarball, data, 0o644); err != nil {
			return 1, err
		}
	}
	return -1, nil
}

// account is a user the binary runs as, with a store and a TMPDIR of its own.
type account struct {
	name     string
	uid, gid int
	home     string
	root     string   // --root
	runRoot  string   // --runroot
	tmp      string   // TMPDIR: stepexec's temp dirs must not outlive a command
	work     string   // scratch files the user can read and write
	since    int64    // nowTicks() when the account was made
	env      []string // more KEY=VALUE for every command (they win)
}

// accounts returns the users to run the suite as: the unprivileged test
// user (or the current user when not root) and, when root, root itself.
func accounts(t *testing.T) []*account {
	t.Helper()
	testenv.Need(t, fileExists(tarball), "Alpine tarball %s (set STEPEXEC_ALPINE_TARBALL)", tarball)
	if os.Getuid() != 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		return []*account{newAccount(t, u)}
	}
	name := os.Getenv("STEPEXEC_TEST_USER")
	if name == "" {
		name = "stepexec-ci"
	}
	u, err := user.Lookup(name)
	testenv.Need(t, err == nil, "unprivileged test user %q (scripts/setup-host.sh --test-user %s)", name, name)
	_, err = exec.LookPath("setpriv")
	testenv.Need(t, err == nil, "setpriv (util-linux)")
	root, _ := user.Current()
	return []*account{newAccount(t, u), newAccount(t, root)}
}

func newAccount(t *testing.T, u *user.User) *account {
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	base, err := os.MkdirTemp("", "stepexec-it-"+u.Username+"-")
	if err != nil {
		t.Fatal(err)
	}
	a := &account{name: u.Username, uid: uid, gid: gid, home: u.HomeDir,
		root: filepath.Join(base, "store"), runRoot: filepath.Join(base, "run"),
		tmp: filepath.Join(base, "tmp"), work: filepath.Join(base, "work"), since: nowTicks()}
	for _, d := range []string{a.tmp, a.work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if os.Getuid() == 0 {
		for _, d := range []string{base, a.tmp, a.work} {
			os.Chown(d, uid, gid)
		}
	}
	t.Cleanup(func() {
		if os.Getuid() == 0 && uid != 0 {
			// podman leaves its rootless pause process running.
			exec.Command("pkill", "-U", strconv.Itoa(uid), "-x", "catatonit").Run()
		}
		a.removeAll(t, base)
	})
	return a
}

// removeAll deletes a test tree; the store holds files of the user's
// subordinate ids, which only root (or the user's namespace) may delete.
func (a *account) removeAll(t *testing.T, dir string) {
	if os.Getuid() == 0 {
		os.RemoveAll(dir)
		return
	}
	if err := exec.Command("podman", "unshare", "rm", "-rf", dir).Run(); err != nil {
		t.Logf("could not remove %s: %v", dir, err)
	}
}

func (a *account) rootless() bool { return a.uid != 0 }

// result is one run of the binary.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// command prepares `stepexec --root … --runroot … ARGS` as the account.
func (a *account) command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--root", a.root, "--runroot", a.runRoot}, args...)
	return a.commandOf(ctx, binary, full...)
}

// commandOf runs any program as the account, with a clean environment.
func (a *account) commandOf(ctx context.Context, prog string, args ...string) *exec.Cmd {
	env := []string{"HOME=" + a.home, "USER=" + a.name, "TMPDIR=" + a.tmp,
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	env = append(env, a.env...)
	var cmd *exec.Cmd
	if os.Getuid() == 0 && a.uid != 0 {
		all := append([]string{"--reuid=" + strconv.Itoa(a.uid), "--regid=" + strconv.Itoa(a.gid), "--init-groups", "--", prog}, args...)
		cmd = exec.CommandContext(ctx, "setpriv", all...)
	} else {
		cmd = exec.CommandContext(ctx, prog, args...)
	}
	cmd.Env = env
	cmd.Dir = a.work
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func (a *account) run(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return runCmd(t, a.command(ctx, args...))
}

func runCmd(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("running %v: %v", cmd.Args, err)
		}
		r.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.code = 128 + int(ws.Signal())
		}
	}
	return r
}

// mustRun runs the binary and fails the test unless it exits 0.
func (a *account) mustRun(t *testing.T, args ...string) result {
	t.Helper()
	r := a.run(t, args...)
	if r.code != 0 {
		t.Fatalf("stepexec %s as %s: %s", strings.Join(args, " "), a.name, r)
	}
	return r
}

// writeContext makes a build context holding a Dockerfile.
func (a *account) writeContext(t *testing.T, name, dockerfile string) string {
	t.Helper()
	dir := filepath.Join(a.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		os.Chown(dir, a.uid, a.gid)
		os.Chown(filepath.Join(dir, "Dockerfile"), a.uid, a.gid)
	}
	return dir
}

// importAlpine imports the tarball into the account's store once.
func (a *account) importAlpine(t *testing.T) {
	t.Helper()
	a.mustRun(t, "import", tarball)
}

// storeLayers lists the layer IDs in the account's store, from
// containers/storage's own record of them.
func (a *account) storeLayers(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(a.root, "overlay-layers", "layers.json"))
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatal(err)
	}
	var layers []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &layers); err != nil {
		t.Fatalf("layers.json: %v", err)
	}
	ids := make([]string, 0, len(layers))
	for _, l := range layers {
		ids = append(ids, l.ID)
	}
	return ids
}

// assertNothingLeft checks what a finished command must not leave: its
// processes, temp dirs, writable snapshots, or layers neither in `before`
// nor kept by the build cache.
func (a *account) assertNothingLeft(t *testing.T, before []string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		left := a.processes(t)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("processes left behind: %v", left)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var names []string
	entries, _ := os.ReadDir(a.tmp)
	for _, e := range entries {
		// containers/storage makes the default run root of a user without
		// XDG_RUNTIME_DIR here, as podman does; it is meant to stay.
		if e.Name() != "storage-run-"+strconv.Itoa(a.uid) {
			names = append(names, e.Name())
		}
	}
	if len(names) > 0 {
		t.Errorf("temp dirs left in TMPDIR: %v", names)
	}
	snaps, _ := filepath.Glob(filepath.Join(a.root, "stepexec", "snapshots", "*"))
	if len(snaps) > 0 {
		t.Errorf("writable snapshots left in the store: %v", snaps)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if bytes.Contains(mounts, []byte(a.root)) {
		t.Errorf("mounts of the store left in the host's mount table")
	}
	// What may stay: the layers there before, and those the build cache
	// keeps (the steps that completed), nothing else.
	keep := map[string]bool{}
	for _, id := range append(before, a.cacheLayers(t)...) {
		keep[id] = true
	}
	var extra []string
	for _, id := range a.storeLayers(t) {
		if !keep[id] {
			extra = append(extra, id)
		}
	}
	if len(extra) > 0 {
		t.Errorf("layers left that no image or cache entry keeps: %v", extra)
	}
}

// cacheRecords maps each build cache record's file to the layer it names.
func (a *account) cacheRecords(t *testing.T) map[string]string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(a.root, "stepexec", "refs", "cache", "*"))
	out := map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rec struct {
			Layer string `json:"layer"`
		}
		if err := json.Unmarshal(raw, &rec); err != nil {
			t.Fatalf("cache record %s: %v", f, err)
		}
		out[f] = rec.Layer
	}
	return out
}

// cacheLayers lists the layers the build cache's records name.
func (a *account) cacheLayers(t *testing.T) []string {
	t.Helper()
	return slices.Collect(maps.Values(a.cacheRecords(t)))
}

// processes lists the live processes that belong to the account's runs:
// for a rootless account every process of its uid or its subordinate ids
// (the suite starts nothing else as them); for root, any process whose
// command line names this account's store or holds a step marker.
func (a *account) processes(t *testing.T) []string {
	t.Helper()
	lo, hi := a.subIDRange(t)
	var left []string
	pids, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range pids {
		cmdline, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(cmdline), "\x00", " ")
		if startTicks(p) < a.since {
			continue // older than this account: not the suite's doing
		}
		mine := strings.Contains(cmd, a.root) || strings.Contains(cmd, stepMarker)
		if a.rootless() && !strings.HasPrefix(cmd, "catatonit") {
			status, _ := os.ReadFile(filepath.Join(p, "status"))
			for _, line := range strings.Split(string(status), "\n") {
				if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
					if uid, _ := strconv.Atoi(f[1]); uid == a.uid || (uid >= lo && uid < hi) {
						mine = true
					}
				}
			}
		}
		if mine {
			left = append(left, filepath.Base(p)+": "+cmd)
		}
	}
	return left
}

// startTicks is a process's start time in clock ticks since boot.
func startTicks(proc string) int64 {
	raw, err := os.ReadFile(filepath.Join(proc, "stat"))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; starttime is field 22.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 {
		return 0
	}
	n, _ := strconv.ParseInt(f[19], 10, 64)
	return n
}

// nowTicks is the current time in the same unit as startTicks (USER_HZ=100).
func nowTicks() int64 {
	raw, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	up, _ := strconv.ParseFloat(strings.Fields(string(raw))[0], 64)
	return int64(up * 100)
}

// stepMarker is put into RUN commands so leftover step processes can be
// found; it names this test process, so concurrent suites do not see each
// other's steps as leftovers.
var stepMarker = "stepexec-it-marker-" + strconv.Itoa(os.Getpid())

// subIDRange is the account's /etc/subuid range [lo, hi), or [0, 0).
func (a *account) subIDRange(t *testing.T) (int, int) {
	raw, err := os.ReadFile("/etc/subuid")
	if err != nil || !a.rootless() {
		return 0, 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 3 && (f[0] == a.name || f[0] == strconv.Itoa(a.uid)) {
			start, _ := strconv.Atoi(f[1])
			n, _ := strconv.Atoi(f[2])
			return start, start + n
		}
	}
	return 0, 0
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

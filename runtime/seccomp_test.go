package runtime

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/internal/testenv"
	"github.com/stepexec/stepexec/runtime/userns"

	"github.com/stepexec/stepexec/runtime/stepinit"
)

// The precompiled filter (seccomp_capture.go, seccomp_load.go) must leave
// a step exactly as libcontainer's own compile-and-load leaves it. Most
// tests here run the same thing both ways: fast is a Runtime as New makes
// it, slow one that lets every init compile the profile.

func slowRuntime(t *testing.T) *Runtime {
	t.Helper()
	r := newRuntime(t)
	r.filter.disabled = true
	return r
}

// bothWays is the Runtimes whose steps must behave the same, named: the
// seccomp filter precompiled or compiled by libcontainer in the init, the
// init the test binary or the small one.
func bothWays(t *testing.T) map[string]*Runtime {
	return map[string]*Runtime{
		"precompiled": newRuntime(t), "libcontainer": slowRuntime(t),
		"small init": withSmallInit(t, newRuntime(t)), "small init/libcontainer": withSmallInit(t, slowRuntime(t)),
	}
}

func TestFilterCaptureDeterministic(t *testing.T) {
	cfg, err := defaultSeccomp()
	if err != nil {
		t.Fatal(err)
	}
	a, err := captureFilter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := captureFilter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.ViaSeccomp != b.ViaSeccomp || a.Flags != b.Flags {
		t.Errorf("two captures load differently: seccomp(2) %v flags %#x, then %v %#x", a.ViaSeccomp, a.Flags, b.ViaSeccomp, b.Flags)
	}
	if err := sameProgram(a.Program, b.Program); err != nil {
		t.Errorf("two captures: %v", err)
	}
	// Docker's profile for x86_64 and x86 is several hundred
	// instructions. It asks for SECCOMP_FILTER_FLAG_SPEC_ALLOW, which only
	// seccomp(2) takes.
	var want uint32
	for _, f := range cfg.Flags {
		if f == specs.LinuxSeccompFlagSpecAllow {
			want |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		}
	}
	if n := len(a.Program) / stepinit.SockFilterSize; n < 300 || a.ViaSeccomp != (want != 0) || a.Flags != want {
		t.Errorf("captured %d instructions via seccomp(2)=%v flags %#x; want hundreds, flags %#x", n, a.ViaSeccomp, a.Flags, want)
	}
	// What the program decides, on the interpreter sameProgram uses.
	vm, err := bpfVM(a.Program)
	if err != nil {
		t.Fatal(err)
	}
	const retErrno = 0x00050000 // SECCOMP_RET_ERRNO
	for _, c := range []struct {
		what     string
		arch, nr uint32
		want     int
	}{
		{"getpid", unix.AUDIT_ARCH_X86_64, unix.SYS_GETPID, unix.SECCOMP_RET_ALLOW},
		{"keyctl", unix.AUDIT_ARCH_X86_64, unix.SYS_KEYCTL, retErrno | int(unix.EPERM)},
		{"an unknown syscall (runc's stub)", unix.AUDIT_ARCH_X86_64, 1000, retErrno | int(unix.ENOSYS)},
		{"i386 getpid", unix.AUDIT_ARCH_I386, 20, unix.SECCOMP_RET_ALLOW},
		{"i386 keyctl", unix.AUDIT_ARCH_I386, 288, retErrno | int(unix.EPERM)},
		{"an unknown i386 syscall", unix.AUDIT_ARCH_I386, 1000, retErrno | int(unix.ENOSYS)},
	} {
		if got, err := vm.Run(seccompData(c.arch, c.nr)); got != c.want || err != nil {
			t.Errorf("%s: verdict %#x (%v), want %#x", c.what, got, err, c.want)
		}
	}
}

// TestSameProgramTellsApart checks that sameProgram is not blind: a change
// after the stub, or one in the stub that changes a verdict, is found.
func TestSameProgramTellsApart(t *testing.T) {
	cfg, err := defaultSeccomp()
	if err != nil {
		t.Fatal(err)
	}
	f, err := captureFilter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tail := bytes.Clone(f.Program)
	tail[len(tail)-1] ^= 1 // the last return's value
	if sameProgram(f.Program, tail) == nil {
		t.Error("a changed last instruction went unnoticed")
	}
	stub := bytes.Clone(f.Program)
	const jgt = 0x25 // BPF_JMP|BPF_JGT|BPF_K: "syscall number above the profile's last: ENOSYS"
	i := 0
	for ; i < 16 && binary.NativeEndian.Uint16(stub[i*stepinit.SockFilterSize:]) != jgt; i++ {
	}
	if i == 16 {
		t.Fatal("no jgt in the stub")
	}
	k := stub[i*stepinit.SockFilterSize+4:]
	binary.NativeEndian.PutUint32(k, binary.NativeEndian.Uint32(k)-1)
	if sameProgram(f.Program, stub) == nil {
		t.Error("a changed stub limit went unnoticed")
	}
}

// TestFilterPrecompiled checks that steps do get the precompiled filter
// here (as the unprivileged user and as real root): the other tests would
// pass on libcontainer's own path as well.
func TestFilterPrecompiled(t *testing.T) {
	rootfs, r := sharedRootfs(t), newRuntime(t)
	if res, _, errOut := run(t, r, rootfs, nil, "true"); res.ExitCode != 0 {
		t.Fatalf("exit %d: %s", res.ExitCode, errOut)
	}
	if r.filter.file == nil {
		t.Fatalf("steps compile their own seccomp filter: %v", r.filter.err)
	}
}

// TestFilterFailsClosed: an init that does not load the filter (here: it
// logs at a level that never reaches the hook) must never run the
// command.
func TestFilterFailsClosed(t *testing.T) {
	rootfs, r := alpineRootfs(t), newRuntime(t)
	initLogLevel = logrus.WarnLevel
	defer func() { initLogLevel = logrus.DebugLevel }()
	_, err := r.Run(context.Background(), Spec{ID: "unfiltered", Rootfs: rootfs, Args: []string{"touch", "/ran"}, Env: alpineEnv})
	if err == nil || !strings.Contains(err.Error(), "did not load its seccomp filter") {
		t.Errorf("Run without the filter loaded: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "ran")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the command ran: %v", err)
	}
	ents, _ := os.ReadDir(r.containers)
	if len(ents) != 0 {
		t.Errorf("state left behind: %v", ents)
	}
}

// TestSeccompStateBothWays compares what a step's process sees of its
// own credentials and seccomp state, as root and as another user.
func TestSeccompStateBothWays(t *testing.T) {
	rootfs := sharedRootfs(t)
	// Speculation_Store_Bypass shows the filter's SPEC_ALLOW flag: without
	// it, seccomp forces the mitigation on.
	const script = `grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp(_filters)?|Speculation_Store_Bypass):' /proc/self/status; ls /proc/self/fd`
	// As this (unfiltered) process has it: SPEC_ALLOW leaves it alone.
	ssb := statusLine(t, "Speculation_Store_Bypass")
	want := map[uint32]string{
		0:    "CapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t2\nSeccomp_filters:\t1\n" + ssb + "0\n1\n2\n3\n",
		1000: "CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t2\nSeccomp_filters:\t1\n" + ssb + "0\n1\n2\n3\n",
	}
	for way, r := range bothWays(t) {
		for uid, want := range want {
			t.Run(fmt.Sprintf("%s/uid%d", way, uid), func(t *testing.T) {
				res, out, errOut := run(t, r, rootfs, func(s *Spec) { s.User = User{UID: uid, GID: uid} }, script)
				if res.ExitCode != 0 || out != want {
					t.Errorf("exit %d (%s), got\n%s\nwant\n%s", res.ExitCode, errOut, out, want)
				}
			})
		}
	}
}

// TestInitErrorsBothWays: an init that fails, before the filter is loaded
// (a mount) or after (the command's lookup, an exec), reports the same as
// libcontainer's own init does, and prints nothing else on the step's
// stderr (the loader's debug log level must not show).
func TestInitErrorsBothWays(t *testing.T) {
	plain := plainAlpine(t)
	if err := os.WriteFile(filepath.Join(plain, "noshebang"), []byte("echo hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rootfs := stepView(t, plain)
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	traversable(t, file)
	tests := []struct {
		name   string
		spec   Spec
		code   int // when the step runs and fails
		stderr string
	}{
		{name: "missing command", spec: Spec{Args: []string{"no-such-cmd"}}},
		{name: "a directory", spec: Spec{Args: []string{"/etc"}}},
		{name: "bind of a file onto a directory", spec: Spec{Args: []string{"true"}, Mounts: []Mount{{Target: "/etc", Source: Bind{Path: file}}}}},
		{name: "exec format error", spec: Spec{Args: []string{"/noshebang"}}, code: 255, stderr: "exec /noshebang: exec format error\n"},
	}
	// The init's fds differ by the filter file's.
	fdNumbers := regexp.MustCompile(`(fd/|Fd=)[0-9]+`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]string{}
			for way, r := range bothWays(t) {
				var stderr bytes.Buffer
				spec := tt.spec
				spec.ID, spec.Rootfs, spec.Env, spec.Stderr = "initerr", rootfs, alpineEnv, &stderr
				res, err := r.Run(context.Background(), spec)
				if (err == nil) != (tt.code != 0) || res.ExitCode != tt.code || stderr.String() != tt.stderr {
					t.Errorf("%s: err %v, exit %d, stderr %q; want exit %d, stderr %q", way, err, res.ExitCode, stderr.String(), tt.code, tt.stderr)
				}
				if err != nil {
					got[way] = fdNumbers.ReplaceAllString(err.Error(), "${1}N")
				}
			}
			if got["precompiled"] != got["libcontainer"] {
				t.Errorf("errors differ:\n%s\n%s", got["precompiled"], got["libcontainer"])
			}
		})
	}
}

// statusLine returns this process's /proc/self/status line key, newline
// included.
func statusLine(t *testing.T, key string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if strings.HasPrefix(line, key+":") {
			return line
		}
	}
	t.Fatalf("no %s line in /proc/self/status", key)
	return ""
}

// probeSource is a static program for the filter tests: with "euid" it
// prints its effective uid; otherwise it tries system calls Docker's
// profile denies (unshare, mount, keyctl) and allows, natively and
// through the i386 entry (int 0x80), and prints each outcome. The
// unknown system call (1000) gets runc's ENOSYS (its patch of the
// filter), not the profile's EPERM.
const probeSource = `
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

static long i386call(long nr, long a, long b) {
	long r;
	__asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b) : "memory");
	return r;
}
static const char *native(long r) { return r == -1 ? strerrorname_np(errno) : "ok"; }
static const char *compat(long r) { return r < 0 ? strerrorname_np(-r) : "ok"; }

int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "euid") == 0) {
		printf("%d\n", geteuid());
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "i386") == 0) {
		printf("%s\n", compat(i386call(20, 0, 0)));
		return 0;
	}
	printf("unshare %s\n", native(unshare(CLONE_NEWUSER)));
	printf("mount %s\n", native(mount("none", "/mnt", "tmpfs", 0, 0)));
	printf("keyctl %s\n", native(syscall(SYS_keyctl, 0, -3, 0)));
	printf("getpid %s\n", native(syscall(SYS_getpid)));
	printf("unknown %s\n", native(syscall(1000)));
	printf("i386-unshare %s\n", compat(i386call(310, CLONE_NEWUSER, 0)));
	printf("i386-keyctl %s\n", compat(i386call(288, 0, -3)));
	printf("i386-getpid %s\n", compat(i386call(20, 0, 0)));
	printf("i386-unknown %s\n", compat(i386call(1000, 0, 0)));
	return 0;
}
`

// staticProbe compiles probeSource; it needs gcc (cgo does) and a static
// libc, and an x86_64 machine whose kernel runs i386 system calls.
func staticProbe(t *testing.T) string {
	t.Helper()
	if goruntime.GOARCH != "amd64" {
		t.Skip("the probe makes i386 system calls: x86_64 only")
	}
	dir := t.TempDir()
	src, bin := filepath.Join(dir, "probe.c"), filepath.Join(dir, "probe")
	if err := os.WriteFile(src, []byte(probeSource), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("gcc", "-static", "-O1", "-o", bin, src).CombinedOutput()
	testenv.Need(t, err == nil, "gcc -static (gcc and libc6-dev): %v: %s", err, out)
	out, err = exec.Command(bin, "i386").CombinedOutput()
	testenv.Need(t, err == nil && string(out) == "ok\n", "i386 system calls (CONFIG_IA32_EMULATION): %v: %s", err, out)
	return bin
}

// installProbe copies the probe into rootfs as name, with mode (a
// chmod(2) mode: 04755 is setuid).
func installProbe(t *testing.T, probe, rootfs, name string, mode uint32) {
	t.Helper()
	b, err := os.ReadFile(probe)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(rootfs, name)
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// TestSeccompBehaviourBothWays runs the probe both ways: what Docker's
// profile denies is denied, i386 system calls are filtered but allowed
// where the profile allows them, and a setuid-root binary takes effect
// for another user (no no_new_privs).
func TestSeccompBehaviourBothWays(t *testing.T) {
	probe, plain := staticProbe(t), plainAlpine(t)
	installProbe(t, probe, plain, "probe", 0o755)
	installProbe(t, probe, plain, "probe-suid", 0o4755)
	rootfs := stepView(t, plain)
	tests := []struct {
		name string
		args []string
		user User
		want string
	}{
		{"syscalls as root", []string{"/probe"}, User{},
			"unshare EPERM\nmount EPERM\nkeyctl EPERM\ngetpid ok\nunknown ENOSYS\ni386-unshare EPERM\ni386-keyctl EPERM\ni386-getpid ok\ni386-unknown ENOSYS\n"},
		{"syscalls as a user", []string{"/probe"}, User{UID: 1000, GID: 1000},
			"unshare EPERM\nmount EPERM\nkeyctl EPERM\ngetpid ok\nunknown ENOSYS\ni386-unshare EPERM\ni386-keyctl EPERM\ni386-getpid ok\ni386-unknown ENOSYS\n"},
		{"setuid root binary", []string{"/probe-suid", "euid"}, User{UID: 1000, GID: 1000}, "0\n"},
		{"su", []string{"su", "-s", "/bin/sh", "-c", "id -u; id -un", "nobody"}, User{}, "65534\nnobody\n"},
	}
	for way, r := range bothWays(t) {
		for _, tt := range tests {
			t.Run(way+"/"+tt.name, func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				res, err := r.Run(context.Background(), Spec{ID: fmt.Sprintf("p%d", time.Now().UnixNano()), Rootfs: rootfs,
					Args: tt.args, Env: alpineEnv, User: tt.user, Stdout: &stdout, Stderr: &stderr})
				if err != nil || res.ExitCode != 0 || stdout.String() != tt.want {
					t.Errorf("err %v, exit %d, stderr %q, got\n%s\nwant\n%s", err, res.ExitCode, stderr.String(), stdout.String(), tt.want)
				}
			})
		}
	}
}

// sameProgram checks that two programs made by libcontainer for the same
// config are the same filter. libcontainer itself does not make the same
// bytes every time: runc's -ENOSYS stub, which it puts before libseccomp's
// program, orders its architecture checks by iterating a Go map, so a
// step's init loads one of several orderings (4 for x86_64 + x86). So:
// the same length, the same bytes but for the stub (at most stubMax
// instructions), and the same verdict for every architecture and system
// call number, the only input the stub reads.
func sameProgram(a, b []byte) error {
	const stubMax = 16
	if len(a) != len(b) {
		return fmt.Errorf("programs of %d and %d instructions", len(a)/stepinit.SockFilterSize, len(b)/stepinit.SockFilterSize)
	}
	same := 0 // identical trailing instructions
	for i := len(a) - stepinit.SockFilterSize; i >= 0 && bytes.Equal(a[i:i+stepinit.SockFilterSize], b[i:i+stepinit.SockFilterSize]); i -= stepinit.SockFilterSize {
		same++
	}
	if n := len(a) / stepinit.SockFilterSize; n-same > stubMax {
		return fmt.Errorf("programs of %d instructions differ in their first %d, more than the stub", n, n-same)
	}
	va, err := bpfVM(a)
	if err != nil {
		return err
	}
	vb, err := bpfVM(b)
	if err != nil {
		return err
	}
	arches := []uint32{unix.AUDIT_ARCH_X86_64, unix.AUDIT_ARCH_I386, unix.AUDIT_ARCH_AARCH64}
	for _, arch := range arches {
		for _, base := range []uint32{0, 0x40000000} { // x32 system calls set bit 30
			for nr := base; nr < base+2048; nr++ {
				in := seccompData(arch, nr)
				ra, errA := va.Run(in)
				rb, errB := vb.Run(in)
				if ra != rb || errA != nil || errB != nil {
					return fmt.Errorf("arch %#x nr %#x: verdict %#x (%v) and %#x (%v)", arch, nr, ra, errA, rb, errB)
				}
			}
		}
	}
	return nil
}

// bpfVM returns a cBPF interpreter (x/net/bpf's) running prog.
func bpfVM(prog []byte) (*bpf.VM, error) {
	insns := make([]bpf.Instruction, len(prog)/stepinit.SockFilterSize)
	for i := range insns {
		b := prog[i*stepinit.SockFilterSize:]
		insns[i] = bpf.RawInstruction{Op: binary.NativeEndian.Uint16(b), Jt: b[2], Jf: b[3], K: binary.NativeEndian.Uint32(b[4:])}.Disassemble()
	}
	return bpf.NewVM(insns)
}

// seccompData is a struct seccomp_data with zero ip and arguments, laid
// out for x/net/bpf's interpreter, which loads 32-bit words big-endian
// where the kernel loads them in host order.
func seccompData(arch, nr uint32) []byte {
	d := make([]byte, 64)
	binary.BigEndian.PutUint32(d[0:], nr)
	binary.BigEndian.PutUint32(d[4:], arch)
	return d
}

// TestFilterSameAsLibcontainer reads, as real root, the filter a step's
// process runs under (PTRACE_SECCOMP_GET_FILTER needs CAP_SYS_ADMIN in the
// initial user namespace) from a step compiled by libcontainer and from
// one given the precompiled filter: the latter must be the Runtime's
// captured program byte for byte, the former the same filter (see
// sameProgram), and each the only filter.
func TestFilterSameAsLibcontainer(t *testing.T) {
	if os.Geteuid() != 0 || userns.InUserNamespace() {
		t.Skip("reading another process's seccomp filter needs real root (CAP_SYS_ADMIN in the initial user namespace); the unprivileged run checks the rest")
	}
	rootfs := sharedRootfs(t)
	fast, slow := newRuntime(t), slowRuntime(t)
	precompiled := runningFilter(t, fast, rootfs)
	captured, ok, err := stepinit.ReadFilterFile(int(fast.filter.file.Fd()))
	if !ok || err != nil {
		t.Fatalf("the Runtime's filter file: %v %v", ok, err)
	}
	if !bytes.Equal(precompiled, captured.Program) {
		t.Errorf("a step given the precompiled filter runs under another program (%d bytes, captured %d)", len(precompiled), len(captured.Program))
	}
	for i := range 3 {
		if err := sameProgram(runningFilter(t, slow, rootfs), captured.Program); err != nil {
			t.Errorf("step %d compiled by libcontainer: %v", i, err)
		}
	}
}

// runningFilter starts a step that sleeps, reads the seccomp filter of
// its sleep process and kills the step. Not of its pid 1: that one is the
// builder's child, and the builder's own wait would take the ptrace stop.
func runningFilter(t *testing.T, r *Runtime, rootfs string) []byte {
	t.Helper()
	marker := fmt.Sprintf("%d.%d", 500+time.Now().UnixNano()%400, os.Getpid())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := r.Run(ctx, Spec{ID: "f" + strings.ReplaceAll(marker, ".", ""), Rootfs: rootfs, Args: []string{"sh", "-c", "sleep " + marker + " & wait"}, Env: alpineEnv})
		done <- err
	}()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("the sleeping step: %v", err)
		}
	}()
	var pids []string
	for deadline := time.Now().Add(10 * time.Second); len(pids) == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		pids = stepProcesses(t, "sleep\x00"+marker)
	}
	if len(pids) != 1 {
		t.Fatalf("step processes of marker %s: %v", marker, pids)
	}
	var pid int
	fmt.Sscan(pids[0], &pid)
	prog, err := ptraceFilter(pid)
	if err != nil {
		t.Fatalf("reading the seccomp filter of step process %d: %v", pid, err)
	}
	return prog
}

// ptraceFilter returns the program of pid's only seccomp filter.
func ptraceFilter(pid int) ([]byte, error) {
	goruntime.LockOSThread() // the tracer is this thread
	defer goruntime.UnlockOSThread()
	if err := unix.PtraceAttach(pid); err != nil {
		return nil, fmt.Errorf("attach: %w", err)
	}
	defer unix.PtraceDetach(pid)
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		return nil, fmt.Errorf("waiting for the stop: %w", err)
	}
	getFilter := func(index int, buf []unix.SockFilter) (int, error) {
		var p unsafe.Pointer
		if len(buf) > 0 {
			p = unsafe.Pointer(&buf[0])
		}
		n, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(pid), uintptr(index), uintptr(p), 0, 0)
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
	n, err := getFilter(0, nil)
	if err != nil {
		return nil, fmt.Errorf("PTRACE_SECCOMP_GET_FILTER: %w", err)
	}
	if _, err := getFilter(1, nil); !errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("a second filter: %v", err)
	}
	insns := make([]unix.SockFilter, n)
	if _, err := getFilter(0, insns); err != nil {
		return nil, err
	}
	prog := make([]byte, 0, n*stepinit.SockFilterSize)
	for _, in := range insns {
		prog = binary.NativeEndian.AppendUint16(prog, in.Code)
		prog = append(prog, in.Jt, in.Jf)
		prog = binary.NativeEndian.AppendUint32(prog, in.K)
	}
	return prog, nil
}

// BenchmarkCaptureFilter is the once-per-Runtime cost of the precompiled
// filter: a helper process compiling Docker's profile.
func BenchmarkCaptureFilter(b *testing.B) {
	cfg, err := defaultSeccomp()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := captureFilter(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

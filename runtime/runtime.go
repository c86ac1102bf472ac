// Package runtime runs one process of a build step on a prepared root
// filesystem in fresh namespaces, through runc's libcontainer.
//
// Terms:
//   - rootfs: the already-mounted directory (an overlay's merged dir) the
//     step sees as "/". The caller owns the mount.
//   - step: one Run call: one container created, started, waited for and
//     destroyed. Nothing of it survives Run: no process (the step's process
//     is pid 1 of its own pid namespace, so its exit kills the rest), no
//     libcontainer state, no cgroup, and no mountpoint stub in the rootfs.
//     Should the builder die mid-step, even by SIGKILL, the step's
//     processes die with it (see watcher.go).
//
// Every step gets new user (id map from userns.NestedIDMaps: the identity
// over stepexec's outer namespace, or, as real root, ids 0..65535 shifted
// to root's subordinate ids so that host root is never mapped into a step;
// its rootfs must then be idmapped to match, see snapshot.ForStep),
// mount, pid, ipc, uts and network namespaces. Its network (Spec.Network,
// see network.go) has only "lo" (none), is the builder's own (host), or
// reaches the host's through a user-mode NAT started for the step
// (private, see nat.go); its /etc/hosts, /etc/hostname and
// /etc/resolv.conf are generated for it and never land in the rootfs
// (netfiles.go).
// The process gets Docker's default capabilities, masked /proc paths and
// seccomp profile (see defaultSeccomp), without no_new_privs, as docker
// runs RUN steps. The profile is compiled once per Runtime, by
// libcontainer's own code, and each step's init loads the result where
// libcontainer would have compiled it (seccomp_capture.go,
// seccomp_load.go). Its /dev holds only the devices docker allows; as real
// root the step's cgroup also denies every other device (deviceRules),
// whatever nodes the rootfs holds (snapshots mount it nodev as well).
// A real-root process removes the cgroups a killed one left (New).
//
// Spec.Mounts (RUN --mount) are made after the standard mounts: binds,
// idmapped as real root, tmpfs, and secrets on a tmpfs of the step's own;
// see mount.go and mounts.go.
//
// A binary importing this package doubles as libcontainer's "init": see
// the package init function.
package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // runs the C half of "init" before the Go runtime
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/runtime/stepinit"
	"github.com/stepexec/stepexec/runtime/userns"
)

// init turns any binary (or test binary) importing this package into
// libcontainer's init: libcontainer starts a step by re-executing the
// running binary as "/proc/self/exe init".
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		// This is a step's pid 1, child of the builder (see watcher.go),
		// running from this binary: no small init was appended (see
		// initexe.go), or this is a test binary.
		stepinit.Main() // never returns
	}
	if len(os.Args) > 0 && os.Args[0] == captureArg0 {
		os.Exit(runCaptureHelper())
	}
	if len(os.Args) > 0 && os.Args[0] == stepinit.WatcherArg0 {
		os.Exit(stepinit.RunWatcher())
	}
	// libcontainer's mount-source goroutine setns(2)s its locked thread
	// into a step's mount namespace and ends without unlocking it. Go
	// ends such a thread, but parks the main one forever instead: in the
	// step's namespace, which then stays alive with every mount in it (a
	// secret's tmpfs, the step's rootfs) until the process exits. Locked
	// to the main goroutine from init on, the main thread runs no other.
	goruntime.LockOSThread()
}

// User is the identity the step's process runs as, in the ids of the
// step's user namespace (the image's ids).
type User struct {
	UID, GID       uint32
	AdditionalGIDs []uint32
}

// Spec describes one step's process.
type Spec struct {
	ID       string    // unique per step; names the container and its state dir
	Rootfs   string    // mounted root filesystem
	Args     []string  // argv; Args[0] is resolved by PATH from Env inside the rootfs
	Env      []string  // the whole environment of the process
	Cwd      string    // created if missing (that creation belongs in the layer, as with docker)
	User     User      // uid/gid and supplementary groups
	Hostname string    // default: a random 12-hex-digit id, as docker does
	Stdout   io.Writer // nil discards; stdin is always /dev/null
	Stderr   io.Writer // nil discards
	OnStart  func()    // called once the process is running; may be nil
	Mounts   []Mount   // RUN --mount extras, mounted over the rootfs
	Limits   Limits    // cgroup limits (see CheckLimits)
	Network  Network   // "" is NetworkNone
}

// Result is the outcome of a step whose sandbox worked.
type Result struct {
	ExitCode int           // the process's exit status; 128+signal if killed by a signal
	Setup    time.Duration // create + start until the process runs
	Run      time.Duration // process running
	Teardown time.Duration // destroy + cleanup
}

// Options configures a Runtime.
type Options struct {
	// StateDir is where libcontainer state and per-step generated files
	// go; it is created and removed by Close. It must not be inside the
	// running binary's directory: libcontainer's cheap way of protecting
	// /proc/self/exe (an overlay with that directory and the state dir as
	// lower layers) fails with ELOOP then, and every step would copy the
	// whole binary into a memfd instead. Empty means a new temp dir.
	StateDir string
	// FilterCache is a directory that outlives builds, where the seccomp
	// filter compiled for steps is kept for the next build on this
	// machine (seccomp_cache.go); "" compiles it once per Runtime.
	FilterCache string
}

// Runtime runs steps. It is safe for concurrent Run calls with distinct IDs.
type Runtime struct {
	stateDir   string
	containers string // libcontainer's root
	files      string // generated /etc/hosts, /etc/hostname per step
	uids, gids []configs.IDMap
	realRoot   bool
	shift      *userns.Shift    // real root: how steps' ids are shifted; nil when they are not
	seccomp    *configs.Seccomp // shared by every step's config, never modified
	filter     precompiled      // seccomp, compiled once for every step's init to load
	initExe    smallInit        // what steps' inits run (initexe.go)
	sealing    sealCheck        // how steps' inits are protected (exeseal.go)

	mu      sync.Mutex
	active  int // steps between config and teardown
	watcher watcher

	natOnce sync.Once // finds nat or natErr on first use
	nat     natDriver
	natErr  error
	natOnly string         // the one NAT helper to use (tests of each); "" picks
	reaping sync.WaitGroup // NAT helpers killed, not yet reaped
}

// New prepares a Runtime: creates its state dir and reads the id maps the
// steps' nested user namespaces will get. As real root it also removes the
// cgroups of stepexec processes that died without doing so.
func New(opts Options) (*Runtime, error) {
	uids, gids, err := userns.NestedIDMaps()
	if err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	sc, err := defaultSeccomp()
	if err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	dir := opts.StateDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "stepexec-runtime-"); err != nil {
			return nil, fmt.Errorf("runtime: creating state dir: %w", err)
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("runtime: creating state dir: %w", err)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	r := &Runtime{
		stateDir:   dir,
		containers: filepath.Join(dir, "containers"),
		files:      filepath.Join(dir, "files"),
		uids:       uids,
		gids:       gids,
		realRoot:   os.Geteuid() == 0 && !userns.InUserNamespace(),
		seccomp:    sc,
		filter:     precompiled{cacheDir: opts.FilterCache},
		initExe:    smallInit{},
	}
	for _, d := range []string{r.containers, r.files} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("runtime: creating %s: %w", d, err)
		}
	}
	if r.realRoot {
		if r.shift, err = userns.StepShift(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("runtime: %w", err)
		}
	}
	r.removeStaleCgroups()
	return r, nil
}

// Close stops the step watcher, reaps the steps' NAT helpers and removes
// the state dir.
func (r *Runtime) Close() error {
	r.watcher.close()
	r.filter.close()
	r.initExe.close()
	r.reaping.Wait()
	if err := os.RemoveAll(r.stateDir); err != nil {
		return fmt.Errorf("runtime: removing state dir: %w", err)
	}
	return nil
}

// Run runs spec's process to completion. A non-zero exit is reported in
// Result.ExitCode, not as an error; an error means the sandbox failed. When
// ctx is cancelled the step's init is SIGKILLed (its pid namespace takes
// every other process with it), the step is torn down and the error wraps
// ctx.Err(). Teardown happens on every path, panics included.
func (r *Runtime) Run(ctx context.Context, spec Spec) (res Result, retErr error) {
	if len(spec.Args) == 0 {
		return res, errors.New("runtime: empty Args")
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("runtime: step %s: %w", spec.ID, err)
	}
	rootfs, err := filepath.Abs(spec.Rootfs)
	if err != nil {
		return res, err
	}
	if spec.Hostname == "" {
		spec.Hostname = randomHostname()
	}
	// The step's pid 1 gets SIGKILL when the thread that forks it ends:
	// keep that thread until the step is over.
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	if err := r.sealing.check(r.containers); err != nil {
		return res, fmt.Errorf("runtime: step %s: %w", spec.ID, err)
	}
	start := time.Now()
	st := &step{r: r, spec: spec, rootfs: rootfs, files: filepath.Join(r.files, spec.ID), filter: r.filter.get(r.seccomp), initExe: r.initExe.get()}
	defer func() {
		t := time.Now()
		if err := st.teardown(); err != nil && retErr == nil {
			retErr = err
		}
		res.Teardown = time.Since(t)
	}()

	r.stepStarting()
	cfg, err := st.config()
	if err != nil {
		return res, err
	}
	c, err := libcontainer.Create(r.containers, spec.ID, cfg)
	if err != nil {
		return res, fmt.Errorf("runtime: creating container %s on %s: %w", spec.ID, rootfs, err)
	}
	st.container = c

	p, err := st.start(ctx)
	if err != nil {
		return res, err
	}
	running := time.Now()
	res.Setup = running.Sub(start)
	if spec.OnStart != nil {
		spec.OnStart()
	}

	waited := make(chan waitResult, 1)
	go func() {
		ps, err := p.Wait()
		waited <- waitResult{ps, err}
	}()
	var w waitResult
	select {
	case w = <-waited:
	case <-ctx.Done():
		_ = p.Signal(unix.SIGKILL)
		<-waited
		st.process = nil
		res.Run = time.Since(running)
		return res, fmt.Errorf("runtime: step %s killed: %w", spec.ID, ctx.Err())
	}
	st.process = nil
	res.Run = time.Since(running)
	if w.ps == nil {
		return res, fmt.Errorf("runtime: waiting for step %s: %w", spec.ID, w.err)
	}
	res.ExitCode = exitCode(w.ps)
	return res, nil
}

// start starts the step's process in its container, and hands its pid 1 to
// the watcher before letting it exec the command.
func (s *step) start(ctx context.Context) (*libcontainer.Process, error) {
	spec := s.spec
	user := spec.User
	groups := make([]int, len(user.AdditionalGIDs))
	for i, g := range user.AdditionalGIDs {
		groups[i] = int(g)
	}
	cwd := spec.Cwd
	if cwd == "" {
		cwd = "/"
	}
	p := &libcontainer.Process{
		Args:             spec.Args,
		Env:              spec.Env,
		Cwd:              cwd,
		UID:              int(user.UID),
		GID:              int(user.GID),
		AdditionalGroups: groups,
		Stdout:           spec.Stdout,
		Stderr:           spec.Stderr,
		Init:             true,
		LogLevel:         strconv.Itoa(int(stepinit.StepLogLevel)),
	}
	if s.filter != nil {
		// The init loads it on a debug log entry (stepinit's init.go).
		p.ExtraFiles = []*os.File{s.filter}
		p.LogLevel = strconv.Itoa(int(initLogLevel))
	}
	if s.initExe != nil {
		p.ExtraFiles = append(p.ExtraFiles, s.initExe)
	}
	if err := s.container.Start(p); err != nil {
		return nil, fmt.Errorf("runtime: starting %q in %s: %w", spec.Args[0], spec.ID, err)
	}
	s.process = p
	pid, err := p.Pid()
	if err != nil {
		return nil, fmt.Errorf("runtime: step %s: %w", spec.ID, err)
	}
	if s.filter != nil {
		if err := filterLoaded(pid, s.r.filter.filters); err != nil {
			return nil, fmt.Errorf("runtime: step %s: %w", spec.ID, err)
		}
	}
	if s.initExe != nil {
		if err := runsSmallInit(pid); err != nil {
			return nil, fmt.Errorf("runtime: step %s: %w", spec.ID, err)
		}
	}
	if err := s.r.watcher.watch(pid, s.r.stateDir, s.initExe); err != nil {
		return nil, err
	}
	if err := s.connectNetwork(ctx, pid); err != nil {
		return nil, err
	}
	if err := s.container.Exec(); err != nil {
		return nil, fmt.Errorf("runtime: starting %q in %s: %w", spec.Args[0], spec.ID, err)
	}
	return p, nil
}

type waitResult struct {
	ps  *os.ProcessState
	err error
}

func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

func randomHostname() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// step is the state of one Run that teardown must undo.
type step struct {
	r          *Runtime
	spec       Spec
	rootfs     string
	files      string   // generated files dir
	stubs      []string // paths in rootfs that did not exist before the step (mountpoints libcontainer may create)
	hostMounts []string // mounted for the step on the builder's side (mounts.go), innermost last
	secrets    bool     // the secrets tmpfs is mounted
	filter     *os.File // precompiled seccomp filter for the init to load; nil: libcontainer compiles it
	initExe    *os.File // the sealed small init for the init to run; nil: it is the running binary
	container  *libcontainer.Container
	process    *libcontainer.Process // non-nil while not yet waited for
	nat        natSession            // a private step's NAT helper, while it runs
}

// teardown kills what is left, destroys the container, unmounts what
// userMounts mounted, removes the state and generated files and the
// mountpoint stubs libcontainer created.
func (s *step) teardown() error {
	var errs []error
	if s.process != nil {
		// Only on a panic or a failure between start and wait.
		_ = s.process.Signal(unix.SIGKILL)
		_, _ = s.process.Wait()
	}
	s.disconnectNetwork()
	if s.container != nil {
		if err := s.container.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("runtime: destroying %s: %w", s.spec.ID, err))
		}
	}
	// Destroy removes the state dir only on success: make sure.
	if err := os.RemoveAll(filepath.Join(s.r.containers, s.spec.ID)); err != nil {
		errs = append(errs, err)
	}
	if err := s.unmountHost(); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(s.files); err != nil {
		errs = append(errs, err)
	}
	s.r.stepDone()
	s.removeStubs()
	return errors.Join(errs...)
}

// Docker's default capability set.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// Docker's default masked and read-only paths.
var (
	maskPaths = []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore",
		"/proc/keys", "/proc/latency_stats", "/proc/timer_list",
		"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

func mapped(m []configs.IDMap, id int64) bool {
	for _, e := range m {
		if id >= e.ContainerID && id < e.ContainerID+e.Size {
			return true
		}
	}
	return false
}

// config builds the libcontainer config of the step and records which
// mountpoints do not exist yet in the rootfs.
func (s *step) config() (*configs.Config, error) {
	const (
		nosuidNoexecNodev = unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV
	)
	ptsData := "newinstance,ptmxmode=0666,mode=0620"
	if mapped(s.r.gids, 5) {
		ptsData += ",gid=5" // the tty group, as docker; only if it exists in the step
	}
	mounts := []*configs.Mount{
		{Source: "proc", Destination: "/proc", Device: "proc", Flags: nosuidNoexecNodev},
		{Source: "tmpfs", Destination: "/dev", Device: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: "mode=755,size=65536k"},
		{Source: "devpts", Destination: "/dev/pts", Device: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: ptsData},
		{Source: "shm", Destination: "/dev/shm", Device: "tmpfs", Flags: nosuidNoexecNodev, Data: "mode=1777,size=65536k"},
		{Source: "mqueue", Destination: "/dev/mqueue", Device: "mqueue", Flags: nosuidNoexecNodev},
		{Source: "sysfs", Destination: "/sys", Device: "sysfs", Flags: nosuidNoexecNodev | unix.MS_RDONLY},
	}
	// Mountpoints libcontainer would create in the layer: the top-level
	// ones (/dev's children live on the /dev tmpfs).
	for _, m := range []string{"/proc", "/dev", "/sys"} {
		s.recordMissing(m)
	}

	netFiles, err := s.netFileMounts()
	if err != nil {
		return nil, err
	}
	mounts = append(mounts, netFiles...)

	extra, err := s.userMounts()
	if err != nil {
		return nil, err
	}
	mounts = append(mounts, extra...)

	cg := &cgroups.Cgroup{Resources: &cgroups.Resources{}}
	if s.r.realRoot {
		cg.Path = "/" + cgroupParent + "/" + s.spec.ID
		// Never leave it empty: with cgroups/devices imported an empty
		// list is applied too, and denies every device.
		cg.Resources.Devices = deviceRules()
	} else {
		// Inside a user namespace on a host without cgroup delegation:
		// no limits. libcontainer ignores permission errors only when
		// Path is empty; Parent/Name (relative to our own cgroup) still
		// must name a cgroup of its own, since our own is not empty.
		cg.Rootless = true
		cg.Parent, cg.Name = cgroupParent, s.spec.ID
	}
	s.applyLimits(cg)

	caps := &configs.Capabilities{Bounding: defaultCaps, Effective: defaultCaps, Permitted: defaultCaps}
	cfg := &configs.Config{
		Rootfs:            s.rootfs,
		Mounts:            mounts,
		Devices:           specconv.AllowedDevices,
		Hostname:          s.spec.Hostname,
		Namespaces:        configs.Namespaces{{Type: configs.NEWUSER}, {Type: configs.NEWNS}, {Type: configs.NEWPID}, {Type: configs.NEWIPC}, {Type: configs.NEWUTS}},
		UIDMappings:       s.r.uids,
		GIDMappings:       s.r.gids,
		Capabilities:      caps,
		Seccomp:           s.seccomp(),
		MaskPaths:         maskPaths,
		ReadonlyPaths:     readonlyPaths,
		NoNewKeyring:      true,
		ParentDeathSignal: int(unix.SIGKILL),
		RootPropagation:   unix.MS_PRIVATE | unix.MS_REC,
		Cgroups:           cg,
		RootlessEUID:      false, // uid 0 in the outer namespace writes the nested map itself
		RootlessCgroups:   !s.r.realRoot,
	}
	s.netNamespaces(cfg)
	return cfg, nil
}

// seccomp is the step's seccomp config for libcontainer: none when the
// init loads the precompiled filter instead.
func (s *step) seccomp() *configs.Seccomp {
	if s.filter != nil {
		return nil
	}
	return s.r.seccomp
}

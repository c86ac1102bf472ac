package runtime

import (
	"errors"
	"fmt"
	"os"
	goruntime "runtime"
	"slices"
	"sync"

	"github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runc/libcontainer/configs"
	lcseccomp "github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/stepexec/stepexec/runtime/stepinit"
)

// defaultSeccomp is Docker's default seccomp profile (the one moby
// maintains in github.com/moby/profiles/seccomp) resolved for the steps'
// capability set, in libcontainer's form. Resolving depends on the
// capabilities (e.g. mount and unshare are allowed only with
// CAP_SYS_ADMIN), the architecture and the kernel version, none of which
// change while the process runs, so it is computed once.
var defaultSeccomp = sync.OnceValues(func() (*configs.Seccomp, error) {
	if !lcseccomp.Enabled {
		return nil, errors.New("seccomp support not compiled in: build with -tags seccomp (and cgo, libseccomp)")
	}
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
		Bounding: defaultCaps, Effective: defaultCaps, Permitted: defaultCaps,
	}}}
	profile, err := seccomp.GetDefaultProfile(spec)
	if err != nil {
		return nil, fmt.Errorf("resolving docker's default seccomp profile: %w", err)
	}
	cfg, err := specconv.SetupSeccomp(profile)
	if err != nil {
		return nil, fmt.Errorf("converting docker's default seccomp profile: %w", err)
	}
	if !x32Supported() {
		cfg.Architectures = slices.DeleteFunc(cfg.Architectures, func(a string) bool { return a == "x32" })
	}
	return cfg, nil
})

// x32Supported reports whether the kernel runs x32-ABI system calls
// (CONFIG_X86_X32_ABI; most distribution kernels lack it or disable it at
// boot). Without it the x32 part of the filter only turns ENOSYS into
// SIGSYS for a call no program can usefully make (x32 binaries cannot even
// be exec'd), but it is what makes the filter expensive: libcontainer's
// init compiles the profile with libseccomp in every step, and with
// x86_64+x86+x32 that took 29 ms here, against 14 ms without x32.
func x32Supported() bool {
	if goruntime.GOARCH != "amd64" {
		return false
	}
	const x32SyscallBit = 0x40000000
	_, _, errno := unix.RawSyscall(x32SyscallBit|unix.SYS_GETPID, 0, 0, 0)
	return errno != unix.ENOSYS
}

// precompiled is a Runtime's captured filter (seccomp_capture.go), made
// on first use and shared by its steps.
type precompiled struct {
	disabled bool   // compile in every step's init, as libcontainer does (tests compare both)
	cacheDir string // where captured filters are kept across builds; "" for nowhere (seccomp_cache.go)
	once     sync.Once
	file     *os.File // sealed filter file; nil when the capture failed
	err      error    // why it failed
	filters  int      // seccomp filters a step's init has once it loaded its own
}

// get returns the filter file for a step's init, or nil: then the step's
// init compiles the profile itself. A capture that fails (an old kernel
// without seccomp user notification, a builder whose own seccomp filter
// forbids one) costs only time, so it is reported once on stderr and
// not retried.
func (p *precompiled) get(cfg *configs.Seccomp) *os.File {
	if p.disabled {
		return nil
	}
	p.once.Do(func() {
		p.file, p.filters, p.err = capture(cfg, p.cacheDir)
		if p.err != nil {
			fmt.Fprintf(os.Stderr, "stepexec: warning: every RUN step compiles its seccomp filter (~25 ms): %v\n", p.err)
		}
	})
	return p.file
}

func capture(cfg *configs.Seccomp, cacheDir string) (*os.File, int, error) {
	inherited, err := ownFilters()
	if err != nil {
		return nil, 0, err
	}
	f, err := cachedOrCaptured(cfg, cacheDir)
	if err != nil {
		return nil, 0, err
	}
	file, err := f.SealedFile()
	return file, inherited + 1, err
}

func (p *precompiled) close() {
	if p.file != nil {
		p.file.Close()
	}
}

// cachedOrCaptured returns the filter kept in cacheDir for cfg, else
// captures it and keeps it there.
func cachedOrCaptured(cfg *configs.Seccomp, cacheDir string) (*stepinit.Filter, error) {
	key := ""
	if cacheDir != "" {
		key = filterCacheKey(cfg)
	}
	if key != "" {
		if f := loadCachedFilter(cacheDir, key); f != nil {
			return f, nil
		}
	}
	f, err := captureFilter(cfg)
	if err == nil && key != "" {
		storeCachedFilter(cacheDir, key, f)
	}
	return f, err
}

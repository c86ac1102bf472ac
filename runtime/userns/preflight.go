package userns

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// host holds everything Preflight reads, so each diagnosis can be tested
// with fake files.
type host struct {
	uid, gid      int
	username      string
	realRoot      bool
	stepShift     bool   // real root: steps run as root's subordinate ids (StepShift)
	subuid        string // /etc/subuid
	subgid        string // /etc/subgid
	usernsClone   string // /proc/sys/kernel/unprivileged_userns_clone (Debian/Ubuntu patch)
	maxUserNS     string // /proc/sys/user/max_user_namespaces
	apparmorUNS   string // /proc/sys/kernel/apparmor_restrict_unprivileged_userns
	apparmorLabel string // /proc/self/attr/apparmor/current: this process's profile
	executable    string // the running binary, for the AppArmor profile
	filesystems   string // /proc/filesystems
	modulesDir    string // /lib/modules/$(uname -r)
	lookPath      func(string) (string, error)
	hasFileCaps   func(path string) bool
}

func realHost() host {
	h := host{
		uid: os.Getuid(),
		gid: os.Getgid(),
		// Already in the outer namespace (the re-exec'd child): the user
		// namespace checks are moot, as for real root.
		realRoot:      isRealRoot() || isEnteredChild(),
		stepShift:     isRealRoot(),
		subuid:        "/etc/subuid",
		subgid:        "/etc/subgid",
		usernsClone:   "/proc/sys/kernel/unprivileged_userns_clone",
		maxUserNS:     "/proc/sys/user/max_user_namespaces",
		apparmorUNS:   "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
		apparmorLabel: "/proc/self/attr/apparmor/current",
		filesystems:   "/proc/filesystems",
		lookPath:      exec.LookPath,
		hasFileCaps: func(path string) bool {
			sz, err := unix.Getxattr(path, "security.capability", nil)
			return err == nil && sz > 0
		},
	}
	if exe, err := os.Executable(); err == nil {
		h.executable = exe
	}
	if u, err := user.LookupId(strconv.Itoa(h.uid)); err == nil {
		h.username = u.Username
	}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		h.modulesDir = filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:]))
	}
	return h
}

// Preflight diagnoses, before anything else, why the outer namespace of
// mode cannot be made on this host, with one sentence per problem naming
// the file, binary or sysctl involved and the fix. It returns nil when no
// problem is found, else all problems joined. As real root, or inside the
// outer namespace already, only the overlayfs check applies, plus, as real
// root, that root has the subordinate ids steps run as (StepShift);
// SingleUID skips the helper and subid checks.
func Preflight(mode Mode) error {
	return realHost().preflight(mode)
}

func (h host) preflight(mode Mode) error {
	var errs []error
	if !h.realRoot {
		errs = append(errs, h.checkSysctls()...)
		if mode == SubIDs {
			errs = append(errs, h.checkHelpers()...)
			errs = append(errs, h.checkSubIDs(h.subuid, "uid", h.uid)...)
			errs = append(errs, h.checkSubIDs(h.subgid, "gid", h.gid)...)
		}
	}
	if h.stepShift {
		if _, _, err := rootRanges(h.subuid, h.subgid); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, h.checkOverlay()...)
	return errors.Join(errs...)
}

func readTrim(path string) (string, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

func (h host) checkSysctls() []error {
	var errs []error
	if v, ok := readTrim(h.usernsClone); ok && v == "0" {
		errs = append(errs, fmt.Errorf("unprivileged user namespaces are disabled (%s is 0): run `sysctl -w kernel.unprivileged_userns_clone=1` as root", h.usernsClone))
	}
	if v, ok := readTrim(h.maxUserNS); ok && v == "0" {
		errs = append(errs, fmt.Errorf("user namespaces are disabled (%s is 0): run `sysctl -w user.max_user_namespaces=28633` as root", h.maxUserNS))
	}
	if err := h.checkAppArmor(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

func (h host) checkHelpers() []error {
	var errs []error
	for _, name := range []string{"newuidmap", "newgidmap"} {
		path, err := h.lookPath(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s is not in PATH: install it (package uidmap on Debian/Ubuntu, shadow-utils on Fedora) or use single-uid mode", name))
			continue
		}
		st, err := os.Stat(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		setuidRoot := st.Mode()&fs.ModeSetuid != 0
		if sys, ok := st.Sys().(*unix.Stat_t); ok && sys.Uid != 0 {
			setuidRoot = false
		}
		if !setuidRoot && !h.hasFileCaps(path) {
			errs = append(errs, fmt.Errorf("%s is neither setuid root nor has file capabilities: run `chmod u+s %s` (owned by root) or `setcap cap_setuid,cap_setgid+ep %s` as root", path, path, path))
		}
	}
	return errs
}

// checkSubIDs checks the ranges of file (/etc/subuid or /etc/subgid) that
// belong to the user, matched by name or numeric id as shadow-utils does.
func (h host) checkSubIDs(file, kind string, id int) []error {
	f, err := os.Open(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return []error{fmt.Errorf("%s does not exist: add a line \"%s:100000:65536\" as root (`usermod --add-sub%ss 100000-165535 %s`)", file, h.nameOr(id), kind, h.nameOr(id))}
		}
		return []error{fmt.Errorf("reading subordinate ids: %w", err)}
	}
	defer f.Close()
	var total uint64
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, ":")
		if len(parts) != 3 {
			continue
		}
		if parts[0] != strconv.Itoa(id) && (h.username == "" || parts[0] != h.username) {
			continue
		}
		if _, err := strconv.ParseUint(parts[1], 10, 32); err != nil {
			return []error{fmt.Errorf("%s: malformed line %q", file, line)}
		}
		n, err := strconv.ParseUint(parts[2], 10, 32)
		if err != nil {
			return []error{fmt.Errorf("%s: malformed line %q", file, line)}
		}
		found = true
		total += n
	}
	if err := sc.Err(); err != nil {
		return []error{fmt.Errorf("reading %s: %w", file, err)}
	}
	if !found {
		return []error{fmt.Errorf("%s has no entry for user %s: add one as root, e.g. `usermod --add-sub%ss 100000-165535 %s`", file, h.nameOr(id), kind, h.nameOr(id))}
	}
	if total < MinRange {
		return []error{fmt.Errorf("%s gives user %s only %d subordinate %ss, fewer than %d: enlarge the range as root (e.g. `usermod --add-sub%ss 100000-165535 %s`)", file, h.nameOr(id), total, kind, MinRange, kind, h.nameOr(id))}
	}
	return nil
}

func (h host) nameOr(id int) string {
	if h.username != "" {
		return h.username
	}
	return strconv.Itoa(id)
}

func (h host) checkOverlay() []error {
	if b, err := os.ReadFile(h.filesystems); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && f[len(f)-1] == "overlay" {
				return nil
			}
		}
	}
	// Not registered yet: a module the kernel can autoload on first mount
	// is fine.
	if h.modulesDir != "" {
		found := false
		_ = filepath.WalkDir(filepath.Join(h.modulesDir, "kernel", "fs"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), "overlay.ko") {
				found = true
				return fs.SkipAll
			}
			return nil
		})
		if found {
			return nil
		}
	}
	return []error{fmt.Errorf("overlayfs is unavailable: \"overlay\" is not in %s and no overlay module exists under %s: use a kernel built with CONFIG_OVERLAY_FS or install its modules", h.filesystems, filepath.Join(h.modulesDir, "kernel", "fs"))}
}

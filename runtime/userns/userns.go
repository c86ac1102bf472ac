// Package userns puts the stepexec process into its "outer" user+mount
// namespace and diagnoses hosts where that cannot work.
//
// Terms:
//   - outer namespace: the user+mount namespace the binary re-execs itself
//     into once at startup. It is uid 0 there, owns the overlay mounts and
//     holds the caller's uid plus its /etc/subuid range (mode SubIDs) or
//     only the caller's uid (mode SingleUID).
//   - nested namespace: the fresh user namespace libcontainer makes for
//     each RUN step inside the outer one; see NestedIDMaps.
//
// As real root (euid 0 in the initial user namespace) no outer user
// namespace is made: the same code runs with the host's ids, in a mount
// namespace of its own (see Enter), and steps' namespaces map ids 0..65535
// to root's subordinate ids (see Shift).
package userns

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/opencontainers/runc/libcontainer/configs"
)

// Mode selects how the outer namespace maps ids.
type Mode int

const (
	// SubIDs maps the caller's uid/gid to 0 and its full /etc/subuid and
	// /etc/subgid ranges after it, through the setuid helpers newuidmap and
	// newgidmap. This is the default.
	SubIDs Mode = iota
	// SingleUID maps only the caller's uid/gid to 0; no helper or subid
	// range is needed, but see WarnSingleUID.
	SingleUID
)

// String names the mode as the environment variable and messages spell it.
func (m Mode) String() string {
	switch m {
	case SubIDs:
		return "subids"
	case SingleUID:
		return "single-uid"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// WarnSingleUID says what breaks in SingleUID mode.
const WarnSingleUID = "single-uid mode: only uid/gid 0 exists in RUN steps, so USER with another id, chown to other users, adduser/addgroup and packages that create users fail, and every file in the image is owned by root"

// ModeEnv is the environment variable through which the re-exec'd child
// learns which mode it was entered with.
const ModeEnv = "_STEPEXEC_USERNS_MODE"

// MinRange is the smallest subordinate id range Preflight accepts: the
// 65536 ids a typical image uses (nobody is 65534).
const MinRange = 65536

// nestedLimit is the number of ids (0..nestedLimit-1) a step's nested user
// namespace maps at most.
const nestedLimit = 65536

// initialMap is the content of /proc/self/uid_map in the initial user
// namespace.
const initialMap = "0 0 4294967295"

// InUserNamespace reports whether the process is outside the initial user
// namespace, i.e. /proc/self/uid_map is not the identity over all ids.
func InUserNamespace() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		// No /proc/self/uid_map: a kernel without user namespaces.
		return false
	}
	return strings.Join(strings.Fields(string(b)), " ") != initialMap
}

// CurrentMode returns the mode the process was entered with (SubIDs when
// it was not entered by Enter, e.g. as real root).
func CurrentMode() Mode {
	if os.Getenv(ModeEnv) == SingleUID.String() {
		return SingleUID
	}
	return SubIDs
}

// NestedIDMaps returns the uid and gid maps for a step's nested user
// namespace.
//
// Inside the outer namespace: the identity over the extents of the current
// namespace (each /proc/self/{uid,gid}_map line "c h s" becomes {c, c, s}),
// limited to ids 0..65535. Identity matters: an id means the same in the
// step as in the outer namespace that owns the overlay, so the layer diff
// needs no translation. Extents are kept separate because each nested
// extent must lie within one parent extent ({0,0,65537} over "0 1000 1","1
// 100000 65536" is rejected by the kernel).
//
// As real root: StepShift's maps, ids 0..65535 to root's subordinate ids,
// so host root is never mapped into a step (snapshots for steps idmap their
// layers to match). Only when the kernel cannot idmap overlay layers
// (StepShift warned) is it the identity of 0..65535.
func NestedIDMaps() (uids, gids []configs.IDMap, err error) {
	shift, err := StepShift()
	if err != nil {
		return nil, nil, err
	}
	if shift != nil {
		return shift.UIDs, shift.GIDs, nil
	}
	uids, err = nestedFromFile("/proc/self/uid_map")
	if err != nil {
		return nil, nil, err
	}
	gids, err = nestedFromFile("/proc/self/gid_map")
	if err != nil {
		return nil, nil, err
	}
	return uids, gids, nil
}

func nestedFromFile(path string) ([]configs.IDMap, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading id map: %w", err)
	}
	m, err := nestedFromMap(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// nestedFromMap computes NestedIDMaps' result from the text of a
// /proc/PID/{uid,gid}_map file.
func nestedFromMap(text string) ([]configs.IDMap, error) {
	var out []configs.IDMap
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("malformed id map line %q", sc.Text())
		}
		var v [3]uint64
		for i, s := range f {
			n, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("malformed id map line %q: %w", sc.Text(), err)
			}
			v[i] = n
		}
		c, size := v[0], v[2]
		if c >= nestedLimit || size == 0 {
			continue
		}
		if c+size > nestedLimit {
			size = nestedLimit - c
		}
		out = append(out, configs.IDMap{ContainerID: int64(c), HostID: int64(c), Size: int64(size)})
	}
	if len(out) == 0 {
		return nil, errors.New("no id below 65536 is mapped in the current user namespace")
	}
	return out, nil
}

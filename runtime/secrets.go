package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// secretMount writes sec to a file of its own on the step's secrets tmpfs
// (secretsDir), owned by sec's ids as the step sees them, and binds it
// read-only at m.Target, as BuildKit does (nodev, nosuid, and noexec
// unless the mode has an x bit). teardown unmounts the tmpfs: the data
// never reaches a disk.
func (s *step) secretMount(i int, m Mount, sec Secret) (*configs.Mount, error) {
	uid, okU := hostID(s.r.uids, sec.UID)
	gid, okG := hostID(s.r.gids, sec.GID)
	if !okU || !okG {
		return nil, fmt.Errorf("secret owner %d:%d is not an id of the step's user namespace", sec.UID, sec.GID)
	}
	dir, err := s.secretsDir()
	if err != nil {
		return nil, err
	}
	p := filepath.Join(dir, strconv.Itoa(i))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	_, err = f.Write(sec.Data)
	if err == nil {
		err = unix.Fchown(int(f.Fd()), int(uid), int(gid))
	}
	if err == nil {
		err = unix.Fchmod(int(f.Fd()), uint32(sec.Mode.Perm()))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("secret file %s: %w", p, err)
	}
	flags := unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV
	if sec.Mode&0o111 == 0 {
		flags |= unix.MS_NOEXEC
	}
	return &configs.Mount{Source: p, Destination: m.Target, Device: "bind", Flags: flags, PropagationFlags: rprivate}, nil
}

// secretsDir mounts, on the step's first secret, a tmpfs of its own in
// its files dir: in the builder's private mount namespace only, 0700, so
// no other process on the host can reach it (as real root libcontainer's
// privileged side opens each file for the step).
func (s *step) secretsDir() (string, error) {
	dir := filepath.Join(s.files, "secrets")
	if s.secrets {
		return dir, nil
	}
	if err := s.checkPrivateMounts("a secret mount"); err != nil {
		return "", err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return "", fmt.Errorf("mounting a tmpfs for secrets at %s: %w", dir, err)
	}
	s.hostMounts = append(s.hostMounts, dir)
	s.secrets = true
	return dir, nil
}

// hostID maps a step id to this process's id of it.
func hostID(m []configs.IDMap, id uint32) (uint32, bool) {
	for _, e := range m {
		if int64(id) >= e.ContainerID && int64(id) < e.ContainerID+e.Size {
			return uint32(e.HostID + int64(id) - e.ContainerID), true
		}
	}
	return 0, false
}

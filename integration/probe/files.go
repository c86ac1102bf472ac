package main

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// scratch is where probes make their links and directories: the step's
// /dev/shm, so no probe changes the layer.
const scratch = "/dev/shm/stepexec-probe"

// readSecret tries to read the host file at p; reading any byte of it is
// an escape (the host file exists only outside the step).
func readSecret(a *attempts, label, p string) {
	b, err := os.ReadFile(p)
	if err == nil {
		a.escape("%s read %d bytes of the host file", label, len(b))
		return
	}
	a.try(label, err, unix.ENOENT)
}

// read-via PREFIX SECRET: the host file through a /proc/PID/root link.
func readVia(args []string) verdict {
	if len(args) != 2 {
		return unclear("usage: read-via PREFIX SECRET")
	}
	prefix, secret := args[0], args[1]
	var a attempts
	readSecret(&a, "direct", prefix+secret)
	readSecret(&a, "with ..", prefix+"/../../../.."+secret)
	return a.verdict()
}

// read-dotdot SECRET: climbing above "/" with "..".
func readDotdot(args []string) verdict {
	if len(args) != 1 {
		return unclear("usage: read-dotdot SECRET")
	}
	secret := args[0]
	rel := strings.TrimPrefix(secret, "/")
	var a attempts
	readSecret(&a, "absolute", strings.Repeat("/..", 16)+secret)
	if err := os.Chdir("/"); err != nil {
		return unclear("chdir /: %v", err)
	}
	for i := 0; i < 64; i++ {
		if err := os.Chdir(".."); err != nil {
			return unclear("chdir ..: %v", err)
		}
	}
	readSecret(&a, "after chdir ..", rel)
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return unclear("open /: %v", err)
	}
	fd, err := unix.Openat(root, strings.Repeat("../", 16)+rel, unix.O_RDONLY, 0)
	if err == nil {
		unix.Close(fd)
		a.escape("openat .. from / opened the host file")
	} else {
		a.try("openat", err, unix.ENOENT)
	}
	return a.verdict()
}

// read-symlink SECRET: symlinks pointing above "/" or at the host path.
func readSymlink(args []string) verdict {
	if len(args) != 1 {
		return unclear("usage: read-symlink SECRET")
	}
	secret := args[0]
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return unclear("mkdir: %v", err)
	}
	links := []struct{ label, name, target, suffix string }{
		{"absolute ..", "up", strings.Repeat("/..", 16), secret},
		{"relative ..", "rel", strings.TrimPrefix(strings.Repeat("/..", 16), "/"), secret},
		{"to the host path", "direct", secret, ""},
	}
	var a attempts
	for _, l := range links {
		p := filepath.Join(scratch, l.name)
		os.Remove(p)
		if err := os.Symlink(l.target, p); err != nil {
			return unclear("symlink: %v", err)
		}
		readSecret(&a, l.label, p+l.suffix)
	}
	return a.verdict()
}

// chroot-breakout SECRET: the classic escape of chroot(2): chroot into a
// subdirectory while the working directory stays outside it, climb with
// "..", chroot("."). It changes this process's root: nothing runs after it.
func chrootBreakout(args []string) verdict {
	if len(args) != 1 {
		return unclear("usage: chroot-breakout SECRET")
	}
	jail := filepath.Join(scratch, "jail")
	if err := os.MkdirAll(jail, 0o755); err != nil {
		return unclear("mkdir: %v", err)
	}
	var a attempts
	if err := os.Chdir("/"); err != nil {
		return unclear("chdir: %v", err)
	}
	if err := unix.Chroot(jail); err != nil {
		a.try("chroot", err, unix.EPERM)
		return a.verdict()
	}
	for i := 0; i < 64; i++ {
		if err := os.Chdir(".."); err != nil {
			return unclear("chdir ..: %v", err)
		}
	}
	if err := unix.Chroot("."); err != nil {
		return unclear("chroot .: %v", err)
	}
	readSecret(&a, "climb out of a chroot", args[0])
	return a.verdict()
}

// open-by-handle SECRET: "shocker": open_by_handle_at on a file of a host
// filesystem bound into the step (/etc/hosts) with a forged handle of that
// filesystem's root directory (ext4's inode 2), then the host file from
// there; and reopening a genuine handle.
func openByHandle(args []string) verdict {
	if len(args) != 1 {
		return unclear("usage: open-by-handle SECRET")
	}
	rel := strings.TrimPrefix(args[0], "/")
	var a attempts
	for _, mnt := range []string{"/etc/hosts", "/"} {
		fd, err := unix.Open(mnt, unix.O_RDONLY, 0)
		if err != nil {
			a.try("open "+mnt, err, unix.ENOENT)
			continue
		}
		forged := make([]byte, 8)
		binary.LittleEndian.PutUint32(forged, 2) // inode 2, generation 0
		const fileidIno32Gen = 1
		h := unix.NewFileHandle(fileidIno32Gen, forged)
		if dir, err := unix.OpenByHandleAt(fd, h, unix.O_RDONLY|unix.O_DIRECTORY); err == nil {
			a.escape("forged root handle on %s opened a directory", mnt)
			if f, err := unix.Openat(dir, rel, unix.O_RDONLY, 0); err == nil {
				a.escape("and the host file in it")
				unix.Close(f)
			}
			unix.Close(dir)
		} else {
			a.try(mnt+" forged handle", err, unix.EPERM)
		}
		if real, _, err := unix.NameToHandleAt(unix.AT_FDCWD, mnt, 0); err == nil {
			if f, err := unix.OpenByHandleAt(fd, real, unix.O_RDONLY); err == nil {
				a.escape("reopening the handle of %s succeeded", mnt)
				unix.Close(f)
			} else {
				a.try(mnt+" own handle", err, unix.EPERM)
			}
		}
		unix.Close(fd)
	}
	return a.verdict()
}

// write-back PATH…: writes each file's current value back to it: harmless
// if it gets through, and the proof that it did.
func writeBack(args []string) verdict {
	var a attempts
	for _, p := range args {
		old, err := os.ReadFile(p)
		if err != nil {
			continue // absent on this kernel
		}
		writeFile(&a, p, old)
	}
	if len(a.refused)+len(a.got)+len(a.odd) == 0 {
		return unclear("none of %v exists", args)
	}
	return a.verdict()
}

// write PATH VALUE: writes VALUE, which must be harmless if it got through.
func writeValue(args []string) verdict {
	if len(args) != 2 {
		return unclear("usage: write PATH VALUE")
	}
	var a attempts
	writeFile(&a, args[0], []byte(args[1]), unix.ENOENT)
	return a.verdict()
}

// writeFile writes data to p; EROFS, EACCES, EPERM and the extra errnos
// (ENOENT where a kernel may lack the file) mean refused.
func writeFile(a *attempts, p string, data []byte, extra ...unix.Errno) {
	label := strings.TrimPrefix(p, "/")
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		a.try(label, err, append([]unix.Errno{unix.EROFS, unix.EACCES, unix.EPERM}, extra...)...)
		return
	}
	defer f.Close()
	_, err = f.Write(data)
	a.try(label+" (opened, then write)", err, unix.EROFS, unix.EACCES, unix.EPERM)
}

// read-masked PATH…: the paths docker masks must read as empty.
func readMasked(args []string) verdict {
	var a attempts
	for _, p := range args {
		label := strings.TrimPrefix(p, "/")
		fi, err := os.Stat(p)
		if err != nil {
			a.try(label, err, unix.ENOENT)
			continue
		}
		if fi.IsDir() {
			entries, err := os.ReadDir(p)
			switch {
			case err != nil:
				a.try(label, err, unix.EACCES, unix.EPERM)
			case len(entries) > 0:
				a.escape("%s lists %d entries", label, len(entries))
			default:
				a.refuse("%s empty", label)
			}
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			a.try(label, err, unix.EACCES, unix.EPERM)
			continue
		}
		n, err := io.ReadFull(f, make([]byte, 512))
		f.Close()
		if n > 0 {
			a.escape("%s gave %d bytes", label, n)
		} else if err == io.EOF {
			a.refuse("%s empty", label)
		} else {
			a.try(label, err, unix.EACCES, unix.EPERM, unix.EIO)
		}
	}
	return a.verdict()
}

// mknod: a block device (8:0, the first SCSI disk) and /dev/mem (1:1), in
// the layer and on /dev/shm.
func mknodDevices(args []string) verdict {
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return unclear("mkdir: %v", err)
	}
	nodes := []struct {
		label, path string
		mode        uint32
		dev         uint64
	}{
		{"block 8:0 in the layer", "/tmp/stepexec-probe-sda", unix.S_IFBLK | 0o600, unix.Mkdev(8, 0)},
		{"char 1:1 in the layer", "/tmp/stepexec-probe-mem", unix.S_IFCHR | 0o600, unix.Mkdev(1, 1)},
		{"block 8:0 on /dev/shm", scratch + "/sda", unix.S_IFBLK | 0o600, unix.Mkdev(8, 0)},
	}
	var a attempts
	for _, n := range nodes {
		err := unix.Mknod(n.path, n.mode, int(n.dev))
		a.try("mknod "+n.label, err, unix.EPERM)
		if err == nil {
			if f, err := os.Open(n.path); err == nil {
				a.escape("opened the device")
				f.Close()
			}
			os.Remove(n.path)
		}
	}
	return a.verdict()
}

// mount: new mounts, unmasking and remounting what docker makes read-only,
// and the new mount API.
func mountAttempts(args []string) verdict {
	const target = "/mnt"
	if err := os.MkdirAll(target, 0o755); err != nil {
		return unclear("mkdir: %v", err)
	}
	var a attempts
	a.try("tmpfs", unix.Mount("none", target, "tmpfs", 0, ""), unix.EPERM)
	a.try("bind /", unix.Mount("/", target, "", unix.MS_BIND, ""), unix.EPERM)
	a.try("cgroup", unix.Mount("cgroup", target, "cgroup", 0, "memory"), unix.EPERM)
	a.try("remount /proc/sys rw", unix.Mount("none", "/proc/sys", "", unix.MS_REMOUNT|unix.MS_BIND, ""), unix.EPERM)
	a.try("unmount masked /proc/kcore", unix.Unmount("/proc/kcore", unix.MNT_DETACH), unix.EPERM)
	if fd, err := unix.Fsopen("tmpfs", 0); err == nil {
		a.escape("fsopen succeeded")
		unix.Close(fd)
	} else {
		a.try("fsopen", err, unix.EPERM, unix.ENOSYS)
	}
	if fd, err := unix.OpenTree(unix.AT_FDCWD, "/", unix.OPEN_TREE_CLONE); err == nil {
		a.escape("open_tree clone succeeded")
		unix.Close(fd)
	} else {
		a.try("open_tree", err, unix.EPERM, unix.ENOSYS)
	}
	return a.verdict()
}

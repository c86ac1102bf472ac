package snapshot

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// repairTraversal undoes what stepexec did to real-root stores before
// snapshots for steps were mounted in a private tmpfs (stepRoots): it gave
// others search permission (o+x) on the snapshot owner directory and on
// every ancestor of it that lacked it, up to "/", which let any user reach
// a running step's upper directory. The mark of that is o+x on
// <graphroot>/stepexec or on its snapshots/ (both made 0700, and opened by
// nothing else). Where it is found, both become 0700 again, and so do the
// graph root and each of its ancestors whose mode is exactly 0701: 0700
// plus that o+x (containers/storage makes graph roots 0700; podman's
// --userns=auto gives a+x, 0711, which is left alone).
func repairTraversal(graphRoot string) error {
	base := filepath.Join(graphRoot, "stepexec")
	ours := []string{base, filepath.Join(base, "snapshots")}
	marked := false
	for _, d := range ours {
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() && fi.Mode().Perm()&0o001 != 0 {
			marked = true
		}
	}
	if !marked {
		return nil
	}
	for _, d := range ours {
		if err := chmodIf(d, func(perm uint32) bool { return perm != 0o700 }); err != nil {
			return err
		}
	}
	for d := filepath.Clean(graphRoot); d != "/"; d = filepath.Dir(d) {
		if err := chmodIf(d, func(perm uint32) bool { return perm == 0o701 }); err != nil {
			return err
		}
	}
	return nil
}

// chmodIf makes the directory dir 0700 if it exists, is root's and match
// says so of its permission bits.
func chmodIf(dir string, match func(perm uint32) bool) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("snapshot: checking %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 0 || !match(st.Mode&0o7777) {
		return nil
	}
	if err := unix.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("snapshot: making %s 0700 again (an earlier stepexec opened it to other users): %w", dir, err)
	}
	return nil
}

package runtime

import (
	"fmt"
	"os"
	"sync"

	"github.com/opencontainers/runc/libcontainer/exeseal"
)

// Each step's init must not run from a binary a step could reach and
// rewrite (CVE-2019-5736). The rootless builder runs from its binary on
// disk (runtime/userns/childns.go), and libcontainer then seals every
// init through a read-only overlay of the binary's directory with one of
// the state dir's, which costs about as little as not sealing. Overlayfs
// refuses layers that overlap (ELOOP): with the state dir inside the
// binary's directory libcontainer falls back to copying the whole binary
// into a memfd for every step (~10 ms each). As real root the builder
// runs from a sealed copy already and libcontainer uses it as is.
type sealCheck struct {
	once   sync.Once
	sealed bool // the builder runs from a sealed copy (real root)
	copies bool // steps' inits are copies of the binary (warned once)
}

// check says once, on stderr, when steps will pay for a copy of the
// binary each, and how to avoid it. It fails when the binary's path no
// longer names the running binary (rebuilt or upgraded during the build):
// libcontainer's overlay would run the new file as the step's init.
func (c *sealCheck) check(stateDir string) error {
	c.once.Do(func() {
		if c.sealed = exeseal.IsSelfExeCloned(); c.sealed {
			return
		}
		f, err := exeseal.CloneSelfExe(stateDir)
		if err != nil {
			return // the step will fail with libcontainer's own error
		}
		defer f.Close()
		if exeseal.IsCloned(f) { // a memfd: the overlay could not be made
			c.copies = true
			exe, _ := os.Readlink("/proc/self/exe")
			fmt.Fprintf(os.Stderr, "stepexec: warning: every RUN step copies the binary (~10 ms each): libcontainer cannot protect it with an overlay of its directory (of %s), most likely because that directory holds the store's state directory %s; keep the binary outside the store's directories (e.g. in ~/.local/bin or /usr/local/bin)\n", exe, stateDir)
		}
	})
	if c.sealed || c.copies {
		return nil // the init is (a copy of) the running binary itself
	}
	return runningBinaryAt("/proc/self/exe")
}

// runningBinaryAt fails when the path the link exe points to holds
// another file than exe itself.
func runningBinaryAt(exe string) error {
	path, err := os.Readlink(exe)
	if err != nil {
		return nil
	}
	running, err := os.Stat(exe)
	if err != nil {
		return nil
	}
	return replacedBinary(running, path)
}

// replacedBinary fails when path holds another file than running (a
// missing path is fine: libcontainer then copies the running binary).
func replacedBinary(running os.FileInfo, path string) error {
	onDisk, err := os.Stat(path)
	if err != nil || os.SameFile(running, onDisk) {
		return nil
	}
	return fmt.Errorf("stepexec's binary %s was replaced while it ran (rebuilt or upgraded?): RUN steps would run the new file; run the build again", path)
}

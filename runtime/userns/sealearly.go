package userns

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/opencontainers/runc/libcontainer/exeseal"
	"golang.org/x/sys/unix"
)

// The child Enter starts must run from a sealed copy of the binary (see
// reexecSealed), and copying ~30 MB into a memfd takes ~12 ms. The parent
// has nothing to do meanwhile but wait for the user namespace helpers
// and the child's start, so it makes the copy in the background from the
// moment StartSealing is called, and hands it to the child: the memfd and
// the read end of a pipe, inherited under the numbers sealedEnv names.
// The parent writes one byte to the pipe once the copy is complete and
// sealed; the child's C constructor (sealedexec.go) executes the memfd
// after reading it, having checked the seals itself. When anything went
// wrong the child runs on and makes its own copy (reexecSealed).
const sealedEnv = "_STEPEXEC_SEALED_FDS" // "MEMFD,READY"

// handOverMinFD is the lowest fd the hand-over uses.
const handOverMinFD = 64

// early is the copy StartSealing began; nil when none.
var early *earlySeal

type earlySeal struct {
	mem   *os.File // the memfd, being filled
	ready *os.File // read end: one byte once mem is sealed
}

// StartSealing begins the sealed copy of the binary for the child Enter
// will start. It does nothing where no child is started (real root, or in
// the child already) and when a memfd cannot be made (the child then
// copies the binary itself).
func StartSealing() {
	if early != nil || isRealRoot() || isEnteredChild() {
		return
	}
	// Named apart from the copy the child makes itself when there is no
	// hand-over (tests tell the two paths apart by it).
	mem, seal, err := exeseal.Memfd("stepexec-early")
	if err != nil {
		return
	}
	r, w, err := os.Pipe()
	if err != nil {
		mem.Close()
		return
	}
	early = &earlySeal{mem: mem, ready: r}
	go func() {
		defer w.Close()
		if err := fillSealed(mem, seal); err == nil {
			_, _ = w.Write([]byte{1})
		}
	}()
}

// fillSealed copies the running binary into mem (sendfile) and seals it.
func fillSealed(mem *os.File, seal exeseal.SealFunc) error {
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer self.Close()
	st, err := self.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	// Allocating the pages at once is ~15% faster than as the copy goes.
	_ = unix.Fallocate(int(mem.Fd()), 0, 0, size)
	var off int64
	for off < size {
		n, err := unix.Sendfile(int(mem.Fd()), int(self.Fd()), &off, int(size-off))
		if err != nil {
			return fmt.Errorf("copying the binary: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("copying the binary: %d bytes of %d", off, size)
		}
	}
	m := mem
	return seal(&m)
}

// handOverSealing makes the early copy's fds inheritable (duplicates
// without close-on-exec) and names them in the environment the child is
// started with. Only the child is meant to use them; the user namespace
// helpers started in between inherit them too, and ignore them.
func handOverSealing() {
	if early == nil {
		return
	}
	// Above the fds the child's start puts its pipes on (3 and up: the
	// user namespace protocol's), and without close-on-exec.
	memfd, err := unix.FcntlInt(early.mem.Fd(), unix.F_DUPFD, handOverMinFD)
	if err != nil {
		return
	}
	readyfd, err := unix.FcntlInt(early.ready.Fd(), unix.F_DUPFD, handOverMinFD)
	if err != nil {
		unix.Close(memfd)
		return
	}
	_ = os.Setenv(sealedEnv, strconv.Itoa(memfd)+","+strconv.Itoa(readyfd))
}

// discardHandOver closes the fds of a hand-over the child's constructor
// did not take (it takes every one it can use, see sealedexec.go), so
// that nothing else inherits them.
func discardHandOver() {
	v, ok := os.LookupEnv(sealedEnv)
	if !ok {
		return
	}
	os.Unsetenv(sealedEnv)
	for _, f := range strings.Split(v, ",") {
		if fd, err := strconv.Atoi(f); err == nil && fd >= handOverMinFD {
			unix.Close(fd)
		}
	}
}

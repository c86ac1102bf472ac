package stepinit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Filter is a seccomp filter as libcontainer loads it: the call it makes
// and the program it passes. The builder captures it once (runtime's
// seccomp_capture.go) and hands it to each step's init as a sealed file.
type Filter struct {
	// ViaSeccomp: loaded with seccomp(SECCOMP_SET_MODE_FILTER, Flags);
	// otherwise with prctl(PR_SET_SECCOMP), which takes no flags.
	ViaSeccomp bool   `json:"via_seccomp"`
	Flags      uint32 `json:"flags"`
	// Program is the struct sock_filter array, 8 bytes an instruction, in
	// this machine's byte order.
	Program []byte `json:"program"`
}

const (
	// SockFilterSize is the size of one BPF instruction.
	SockFilterSize = 8
	// MaxInsns is BPF_MAXINSNS: the kernel refuses longer programs.
	MaxInsns = 4096
	// FilterFD is the filter file's fd in a step's init
	// (libcontainer.Process.ExtraFiles[0]).
	FilterFD = 3
	// filterMagic starts the filter file.
	filterMagic = "stepexec-bpf-v1\n"
	// filterHeaderSize: filterMagic, a uint32 call (1 prctl, 2 seccomp),
	// a uint32 flags, then the program. Native byte order: it never
	// leaves the machine.
	filterHeaderSize = len(filterMagic) + 8
)

// Validate checks that f is a program the kernel could take and that a
// step may load.
func (f *Filter) Validate() error {
	n := len(f.Program)
	if n == 0 || n%SockFilterSize != 0 || n/SockFilterSize > MaxInsns {
		return fmt.Errorf("seccomp program of %d bytes is not 1..%d instructions", n, MaxInsns)
	}
	if !f.ViaSeccomp && f.Flags != 0 {
		return fmt.Errorf("prctl(PR_SET_SECCOMP) with flags %#x", f.Flags)
	}
	// A listener would have to reach a seccomp agent: not for steps.
	if f.Flags&unix.SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
		return errors.New("seccomp filter asks for a listener")
	}
	return nil
}

// SealedFile returns f as a sealed memfd (a step's init cannot change what
// later steps load).
func (f *Filter) SealedFile() (*os.File, error) {
	b := make([]byte, filterHeaderSize, filterHeaderSize+len(f.Program))
	copy(b, filterMagic)
	call := uint32(1)
	if f.ViaSeccomp {
		call = 2
	}
	binary.NativeEndian.PutUint32(b[len(filterMagic):], call)
	binary.NativeEndian.PutUint32(b[len(filterMagic)+4:], f.Flags)
	return SealedMemfd("stepexec-seccomp-filter", append(b, f.Program...), false, nil)
}

// seal makes a memfd read-only for good.
func seal(f *os.File) error {
	const seals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	_, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals)
	return err
}

// sealed reports whether fd is a memfd sealed against writes.
func sealed(fd int) bool {
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	return err == nil && seals&unix.F_SEAL_WRITE != 0
}

// ReadFilterFile reads the filter from fd, if fd is a filter file: a
// sealed memfd starting with filterMagic.
func ReadFilterFile(fd int) (*Filter, bool, error) {
	if !sealed(fd) {
		return nil, false, nil // not a sealed memfd (or no fd): not ours
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, false, err
	}
	if st.Size < int64(filterHeaderSize) || st.Size > int64(filterHeaderSize+MaxInsns*SockFilterSize) {
		return nil, false, nil
	}
	b := make([]byte, st.Size)
	if n, err := unix.Pread(fd, b, 0); err != nil || n != len(b) {
		return nil, false, fmt.Errorf("reading the seccomp filter (fd %d): %d bytes, %v", fd, n, err)
	}
	if !bytes.HasPrefix(b, []byte(filterMagic)) {
		return nil, false, nil
	}
	call := binary.NativeEndian.Uint32(b[len(filterMagic):])
	f := &Filter{
		ViaSeccomp: call == 2,
		Flags:      binary.NativeEndian.Uint32(b[len(filterMagic)+4:]),
		Program:    b[filterHeaderSize:],
	}
	if call != 1 && call != 2 {
		return nil, true, fmt.Errorf("seccomp filter file: unknown call %d", call)
	}
	return f, true, f.Validate()
}

// Load loads the filter on the calling thread, which must be the main
// one: the thread that execs the step's command, as libcontainer's init
// does (it runs locked to it).
func (f *Filter) Load() error {
	if tid := unix.Gettid(); tid != unix.Getpid() {
		return fmt.Errorf("on thread %d, not the main thread", tid)
	}
	n := len(f.Program) / SockFilterSize
	insns := make([]unix.SockFilter, n)
	for i := range insns {
		b := f.Program[i*SockFilterSize:]
		insns[i] = unix.SockFilter{
			Code: binary.NativeEndian.Uint16(b[0:2]), Jt: b[2], Jf: b[3],
			K: binary.NativeEndian.Uint32(b[4:8]),
		}
	}
	fprog := unix.SockFprog{Len: uint16(n), Filter: &insns[0]}
	var err error
	if f.ViaSeccomp {
		_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
			uintptr(f.Flags), uintptr(unsafe.Pointer(&fprog)))
		if errno != 0 {
			err = errno
		}
	} else {
		err = unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0)
	}
	goruntime.KeepAlive(insns)
	return err
}

// Source is where a file holds the bytes of a SealedMemfd: the kernel
// copies them from there. Size is their length when SealedMemfd is given
// no bytes. Check, if set, compares the copy's first and last (up to)
// 4096 bytes with the expected ones.
type Source struct {
	Path   string
	Offset int64
	Size   int
	Check  func(head, tail []byte) bool
}

// SealedMemfd returns a memfd named name holding b, sealed against any
// change; exec makes it executable where the kernel asks (MFD_EXEC, 6.3+).
// With src the bytes are copied from there, else from b; given both, b
// is the fallback should the copy fail, and given src alone (b nil) the
// copy must succeed.
func SealedMemfd(name string, b []byte, exec bool, src *Source) (*os.File, error) {
	flags := unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	fd, err := unix.MemfdCreate(name, flags|mfdExec(exec))
	if err == unix.EINVAL && exec { // before 6.3: memfds are executable
		fd, err = unix.MemfdCreate(name, flags)
	}
	if err != nil {
		return nil, fmt.Errorf("memfd_create %s: %w", name, err)
	}
	file := os.NewFile(uintptr(fd), name)
	n := len(b)
	if b == nil && src != nil {
		n = src.Size
	}
	copyErr := errors.New("no source")
	if src != nil {
		copyErr = copyFrom(file, *src, n)
	}
	if copyErr != nil && b == nil && src != nil {
		file.Close()
		return nil, fmt.Errorf("copying %d bytes of %s at %d into memfd %s: %w", n, src.Path, src.Offset, name, copyErr)
	}
	if copyErr != nil {
		if err := file.Truncate(0); err != nil {
			file.Close()
			return nil, fmt.Errorf("truncating memfd %s: %w", name, err)
		}
		if _, err := file.WriteAt(b, 0); err != nil {
			file.Close()
			return nil, fmt.Errorf("writing memfd %s: %w", name, err)
		}
	}
	if err := seal(file); err != nil {
		file.Close()
		return nil, fmt.Errorf("sealing memfd %s: %w", name, err)
	}
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		file.Close()
		return nil, fmt.Errorf("rewinding memfd %s: %w", name, err)
	}
	return file, nil
}

// copyFrom fills dst with n bytes of src, copied by the kernel, and checks
// them.
func copyFrom(dst *os.File, src Source, n int) error {
	in, err := os.Open(src.Path)
	if err != nil {
		return err
	}
	defer in.Close()
	off := src.Offset
	for done := 0; done < n; {
		w, err := unix.Sendfile(int(dst.Fd()), int(in.Fd()), &off, n-done)
		if err != nil {
			return err
		}
		if w == 0 {
			return io.ErrUnexpectedEOF
		}
		done += w
	}
	k := min(n, 4096)
	head, tail := make([]byte, k), make([]byte, k)
	if _, err := dst.ReadAt(head, 0); err != nil {
		return err
	}
	if _, err := dst.ReadAt(tail, int64(n-k)); err != nil {
		return err
	}
	if src.Check != nil && !src.Check(head, tail) {
		return errors.New("the copy differs")
	}
	return nil
}

func mfdExec(exec bool) int {
	if exec {
		return unix.MFD_EXEC
	}
	return 0
}

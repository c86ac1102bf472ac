package snapshot

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// kernelVersion is the running kernel's major and minor version.
func kernelVersion(t *testing.T) (int, int) {
	t.Helper()
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	var major, minor int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(uts.Release[:]), "%d.%d", &major, &minor); err != nil {
		t.Fatalf("kernel release %q: %v", uts.Release, err)
	}
	return major, minor
}

// TestProbeLowerdirAppend: the probe says yes exactly on the kernels whose
// overlayfs has "lowerdir+" (6.8+); before 6.5 the parameter is accepted
// when set and refused only when the overlay is created, which the probe
// must see too.
func TestProbeLowerdirAppend(t *testing.T) {
	major, minor := kernelVersion(t)
	want := major > 6 || major == 6 && minor >= 8
	if got := probeLowerdirAppend(); got != want {
		t.Errorf("on Linux %d.%d the probe says lowerdir+ works: %v, want %v", major, minor, got, want)
	}
}

package userns

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

func TestRootRange(t *testing.T) {
	tests := []struct {
		name, in string
		want     []configs.IDMap
		problem  string
	}{
		{
			name: "by name",
			in:   "stepexec-ci:100000:65536\nroot:1000000000:65536\n",
			want: []configs.IDMap{{ContainerID: 0, HostID: 1000000000, Size: 65536}},
		},
		{
			name: "by uid, larger range clipped to 65536",
			in:   "# comment\n\n0:2000000:200000\n",
			want: []configs.IDMap{{ContainerID: 0, HostID: 2000000, Size: 65536}},
		},
		{
			name: "two ranges continue each other",
			in:   "root:300000:1000\nci:100000:65536\nroot:500000:70000\n",
			want: []configs.IDMap{{ContainerID: 0, HostID: 300000, Size: 1000}, {ContainerID: 1000, HostID: 500000, Size: 64536}},
		},
		{name: "no entry", in: "ci:100000:65536\nrootless:1:65536\n", problem: "F has no entry for root"},
		{name: "empty file", in: "", problem: "F has no entry for root"},
		{name: "too small", in: "root:1000000:1000\nroot:2000000:1000\n", problem: "F gives root only 2000 ids"},
		{name: "host root in the range", in: "root:0:65536\n", problem: "F gives root a range starting at host id 0"},
		{name: "malformed", in: "root:x:65536\n", problem: `F has a malformed line "root:x:65536"`},
		{name: "wraps", in: "root:4294967295:65536\n", problem: "F has a malformed line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problem := rootRange(strings.NewReader(tt.in), "F")
			if tt.problem != "" {
				if !strings.HasPrefix(problem, tt.problem) || got != nil {
					t.Fatalf("got %+v, problem %q, want problem %q", got, problem, tt.problem)
				}
				return
			}
			if problem != "" || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v (problem %q), want %+v", got, problem, tt.want)
			}
		})
	}
}

// TestStepShift checks, as real root, the shift this host gives steps and
// that an idmapped clone shows a file stored as uid 0 owned by the steps'
// root, and stores a file created as the steps' root as uid 0.
func TestStepShift(t *testing.T) {
	sh, err := StepShift()
	if err != nil {
		t.Fatal(err)
	}
	if !isRealRoot() {
		if sh != nil {
			t.Fatalf("StepShift = %+v outside the initial user namespace, want nil", sh)
		}
		t.Skip("steps are shifted only as real root")
	}
	if sh == nil {
		t.Fatal("no shift as real root on a kernel that supports idmapped overlay layers (see the warning above)")
	}
	uid, gid := sh.Root()
	if uid == 0 || gid == 0 {
		t.Fatalf("steps' root is host %d:%d", uid, gid)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, "f"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	clone, err := sh.Clone(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer clone.Close()
	var st unix.Stat_t
	for name, want := range map[string][2]int{".": {uid, gid}, "f": {uid + 1000, gid + 1000}} {
		if err := unix.Fstatat(int(clone.Fd()), name, &st, 0); err != nil {
			t.Fatal(err)
		}
		if int(st.Uid) != want[0] || int(st.Gid) != want[1] {
			t.Errorf("%s through the clone: owner %d:%d, want %d:%d", name, st.Uid, st.Gid, want[0], want[1])
		}
	}
	err = sh.AsStepRoot(func() error {
		fd, err := unix.Openat(int(clone.Fd()), "new", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(fd)
		}
		return err
	})
	if err != nil {
		t.Fatalf("creating a file through the clone as the steps' root: %v", err)
	}
	if err := unix.Stat(filepath.Join(dir, "new"), &st); err != nil || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("file created as the steps' root stored as %d:%d (%v), want 0:0", st.Uid, st.Gid, err)
	}
	// This thread's credentials are untouched.
	if fsuid, _ := unix.SetfsuidRetUid(-1); fsuid != 0 {
		t.Errorf("fsuid %d after AsStepRoot", fsuid)
	}
	// Host root cannot create files through it: uid 0 has no id there.
	if err := os.WriteFile(filepath.Join("/proc/self/fd", itoa(clone.Fd()), "host"), nil, 0o644); err == nil {
		t.Error("host root created a file through the idmapped clone")
	}
}

func itoa(fd uintptr) string { return strconv.FormatUint(uint64(fd), 10) }

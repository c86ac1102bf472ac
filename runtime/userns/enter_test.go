package userns

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"go.podman.io/storage/pkg/reexec"
)

const helperEnv = "STEPEXEC_USERNS_TEST_ENTER"

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	if h := os.Getenv(pdeathHelperEnv); h != "" {
		os.Exit(pdeathHelper(h))
	}
	if mode := os.Getenv(helperEnv); mode != "" {
		// Helper process: enter, then report what we got and exit.
		m := SubIDs
		if strings.HasPrefix(mode, "single") {
			m = SingleUID
		}
		if err := Enter(m); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		uid, _ := os.ReadFile("/proc/self/uid_map")
		exe, _ := os.Readlink("/proc/self/exe")
		mntns, _ := os.Readlink("/proc/self/ns/mnt")
		_, leaked := os.LookupEnv(privateMountsEnv)
		fmt.Printf("pid=%d euid=%d mode=%s exe=%s mntns=%s shared=%v leaked=%v protocol=%v inherited=%v\n%s", os.Getpid(), os.Geteuid(), CurrentMode(), exe, mntns, sharedMounts(), leaked, protocolVars(), inheritedFDs(), uid)
		os.Exit(7) // the parent must pass the child's status through
	}
	os.Exit(m.Run())
}

// TestEnterRealRoot checks that as real root Enter makes no user namespace
// but re-executes the process in place (same pid, same arguments) from a
// sealed memfd, so libcontainer does not seal or copy the binary per step,
// into a mount namespace of its own where no mount propagates to or from
// the host, without passing the request on to its children.
func TestEnterRealRoot(t *testing.T) {
	if os.Geteuid() != 0 || InUserNamespace() {
		t.Skip("needs real root; TestEnter covers the unprivileged case")
	}
	hostNS, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), helperEnv+"=subids")
	out, err := cmd.Output()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 7 {
		t.Fatalf("exit %v, want 7: %v\n%s", cmd.ProcessState, err, out)
	}
	norm := strings.Join(strings.Fields(string(out)), " ")
	var mntns string
	for _, f := range strings.Fields(norm) {
		if v, ok := strings.CutPrefix(f, "mntns="); ok {
			mntns = v
		}
	}
	if mntns == "" || mntns == hostNS {
		t.Errorf("mount namespace %q, want a new one (not the test's %s)", mntns, hostNS)
	}
	want := fmt.Sprintf("pid=%d euid=0 mode=subids exe=/memfd:runc_cloned:stepexec (deleted) mntns=%s shared=[] leaked=false protocol=[] inherited=%v 0 0 4294967295", cmd.Process.Pid, mntns, inheritedFDs())
	if norm != want {
		t.Errorf("got %q, want %q", norm, want)
	}
}

// sharedMounts lists the mount points of this process's mount table that
// are in a peer group (propagate mount events).
func sharedMounts() []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var shared []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		for i := 6; i < len(f) && f[i] != "-"; i++ {
			if strings.HasPrefix(f[i], "shared:") {
				shared = append(shared, f[4])
			}
		}
	}
	return shared
}

func TestEnter(t *testing.T) {
	if os.Geteuid() == 0 && !InUserNamespace() {
		t.Skip("as real root Enter makes no namespace (TestEnterRealRoot); run as an unprivileged user (e.g. stepexec-ci) to test it")
	}
	uid := os.Getuid()
	tests := []struct {
		mode string
		want []string
	}{
		{"single", []string{"euid=0 mode=single-uid", fmt.Sprintf("0 %d 1", uid)}},
		{"subids", []string{"euid=0 mode=subids", fmt.Sprintf("0 %d 1", uid), "1 "}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			if tt.mode == "subids" {
				if err := Preflight(SubIDs); err != nil {
					if os.Getenv("STEPEXEC_REQUIRE_ALL") == "1" {
						t.Fatal(err)
					}
					t.Skipf("host not set up for subids: %v", err)
				}
			}
			cmd := exec.Command(os.Args[0], "-test.run", "^$")
			cmd.Env = append(os.Environ(), helperEnv+"="+tt.mode)
			out, err := cmd.Output()
			if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 7 {
				t.Fatalf("exit %v, want 7: %v\n%s", cmd.ProcessState, err, out)
			}
			norm := strings.Join(strings.Fields(string(out)), " ")
			for _, w := range tt.want {
				if !strings.Contains(norm, w) {
					t.Errorf("missing %q in %q", w, norm)
				}
			}
			// The child runs from the binary itself, not re-executed by
			// pkg/unshare through a bind mount (whose /proc/self/exe reads
			// "/"): libcontainer then seals each step's init with an overlay.
			self, err := os.Readlink("/proc/self/exe")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(norm, "exe="+self+" ") {
				t.Errorf("the child does not run from %s: %q", self, norm)
			}
			// Neither the protocol's variables and pipes reach the child's
			// Go code (it inherits only what this process was given).
			if want := fmt.Sprintf("protocol=[] inherited=%v", inheritedFDs()); !strings.Contains(norm, want) {
				t.Errorf("the namespace protocol leaked into the child: %q", norm)
			}
		})
	}
}

// protocolVars lists the namespace protocol's variables left in the
// environment.
func protocolVars() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "_Containers-") || strings.HasPrefix(kv, childEnv+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// inheritedFDs lists the memfds and pipes open beyond stdio.
func inheritedFDs() []string {
	var out []string
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err != nil || n < 3 {
			continue
		}
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		if strings.HasPrefix(target, "/memfd:") || strings.HasPrefix(target, "pipe:") {
			out = append(out, e.Name()+"->"+target)
		}
	}
	return out
}

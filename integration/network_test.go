package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stepexec/stepexec/internal/testenv"
)

// Network tests only reach the test's own listeners on 127.0.0.1 and the
// namespaces stepexec makes for its steps.

// hostServer serves body at / on the host's 127.0.0.1 and returns the port.
func hostServer(t *testing.T, handler http.Handler) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func helloServer(t *testing.T) int {
	return hostServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hello-from-host") }))
}

// needNAT skips (fails in CI) where private networks cannot work.
func needNAT(t *testing.T) {
	t.Helper()
	_, slirpErr := exec.LookPath("slirp4netns")
	_, pastaErr := exec.LookPath("pasta")
	testenv.Need(t, slirpErr == nil || pastaErr == nil, "slirp4netns or pasta (scripts/setup-host.sh installs both)")
	fi, err := os.Stat("/dev/net/tun")
	testenv.Need(t, err == nil && fi.Mode().Perm()&0o006 == 0o006, "/dev/net/tun readable and writable by all (scripts/setup-host.sh makes it 0666)")
}

// runLayers lists the paths each layer above the base holds, in the OCI
// layout at dir.
func runLayers(t *testing.T, dir string) [][]string {
	t.Helper()
	layers, err := readOCI(t, dir).Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, l := range layers[1:] {
		var names []string
		for _, e := range layerEntries(t, l) {
			names = append(names, strings.TrimSuffix(strings.TrimPrefix(e.name, "./"), "/"))
		}
		slices.Sort(names)
		out = append(out, names)
	}
	return out
}

// helperProcesses lists live NAT helpers of uid started after since.
func helperProcesses(uid int, since int64) []string {
	var out []string
	stats, _ := filepath.Glob("/proc/[0-9]*/status")
	for _, p := range stats {
		proc := filepath.Dir(p)
		raw, err := os.ReadFile(p)
		if err != nil || startTicks(proc) < since {
			continue
		}
		var name string
		owner := -1
		for _, line := range strings.Split(string(raw), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) > 1 && f[0] == "Name:":
				name = f[1]
			case len(f) > 1 && f[0] == "Uid:":
				owner, _ = strconv.Atoi(f[1])
			}
		}
		if owner == uid && (name == "slirp4netns" || strings.HasPrefix(name, "passt") || name == "pasta") {
			out = append(out, filepath.Base(proc)+" "+name)
		}
	}
	return out
}

// TestRunNetworkModes: what a RUN reaches of a listener on the host's
// loopback in each mode, that the generated /etc files stay out of every
// layer, and that no helper outlives the build.
func TestRunNetworkModes(t *testing.T) {
	needNAT(t)
	port := helloServer(t)
	df := fmt.Sprintf(`FROM alpine
RUN wget -q -T 5 -O /default.txt http://host.containers.internal:%[1]d/ && (wget -q -T 2 -O - http://127.0.0.1:%[1]d/ 2>/dev/null || echo unreachable) > /default-lo.txt
RUN --network=host wget -q -T 5 -O /host.txt http://127.0.0.1:%[1]d/
RUN --network=none ls /sys/class/net > /none.txt && (wget -q -T 2 -O - http://127.0.0.1:%[1]d/ 2>/dev/null || echo unreachable) >> /none.txt
RUN cat /etc/hosts /etc/resolv.conf /etc/hostname >/dev/null && true
`, port)
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		before := a.storeLayers(t)
		oci := filepath.Join(a.work, "netmodes-oci")
		a.mustRun(t, "build", "-t", "netmodes", "--output", "type=oci,dest="+oci, a.writeContext(t, "ctx-netmodes", df))
		for file, want := range map[string]string{"default.txt": "hello-from-host", "default-lo.txt": "unreachable\n",
			"host.txt": "hello-from-host", "none.txt": "lo\nunreachable\n"} {
			if got := a.fileInImage(t, "netmodes", file); got != want {
				t.Errorf("/%s = %q, want %q", file, got, want)
			}
		}
		want := [][]string{{"default-lo.txt", "default.txt"}, {"host.txt"}, {"none.txt"}, nil}
		if got := runLayers(t, oci); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("RUN layers hold %v, want %v (no /etc, no hosts, hostname or resolv.conf)", got, want)
		}
		a.assertNothingLeft(t, before)
		if left := helperProcesses(a.uid, a.since); len(left) > 0 {
			t.Errorf("NAT helpers left: %v", left)
		}
	})
}

// TestBuildNetworkFlag: --network sets the mode of RUNs without their own.
func TestBuildNetworkFlag(t *testing.T) {
	needNAT(t)
	port := helloServer(t)
	tests := []struct{ flag, want string }{
		{"none", "unreachable"},
		{"host", "hello-from-host"},
		{"private", "unreachable"}, // its own 127.0.0.1
	}
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		for _, tt := range tests {
			name := "ctx-flag-" + tt.flag
			a.writeContext(t, name, fmt.Sprintf("FROM alpine\nRUN (wget -q -T 2 -O - http://127.0.0.1:%d/ 2>/dev/null || echo unreachable) > /out\n", port))
			a.mustRun(t, "build", "--network="+tt.flag, "-t", "flag-"+tt.flag, filepath.Join(a.work, name))
			if got := strings.TrimSpace(a.fileInImage(t, "flag-"+tt.flag, "out")); got != tt.want {
				t.Errorf("--network=%s: the RUN got %q, want %q", tt.flag, got, tt.want)
			}
		}
		r := a.run(t, "build", "--network=bridge", filepath.Join(a.work, "ctx-flag-none"))
		if r.code == 0 || !strings.Contains(r.stderr, `unknown network mode "bridge"`) {
			t.Errorf("--network=bridge: %s", r)
		}
	})
}

// hiddenCommand runs stepexec ARGS as a in a mount namespace of its own
// where each path in hide is covered: by /dev/null (a helper then is not
// installed) or, for /dev/net/tun, by a file only root may open.
func (a *account) hiddenCommand(t *testing.T, hide []string, args ...string) result {
	t.Helper()
	lockedTun := filepath.Join(a.work, "tun-0600")
	if err := os.WriteFile(lockedTun, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	for _, p := range hide {
		src := "/dev/null"
		if p == "/dev/net/tun" {
			src = lockedTun
		}
		fmt.Fprintf(&script, "mount --bind %s %s || exit 99\n", src, p)
	}
	script.WriteString(`exec "$@"`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	inner := a.command(ctx, args...)
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"--mount", "--propagation", "private", "--", "sh", "-c", script.String(), "sh", inner.Path}, inner.Args[1:]...)...)
	cmd.Env, cmd.Dir, cmd.WaitDelay = inner.Env, inner.Dir, inner.WaitDelay
	return runCmd(t, cmd)
}

// TestNetworkDiagnosis: without a NAT helper, --network=private is refused
// before any step, naming the packages, and the default falls back to the
// host's network with a one-line warning; a /dev/net/tun the user cannot
// open is named with its fix.
func TestNetworkDiagnosis(t *testing.T) {
	testenv.NeedRoot(t, "to hide the NAT helpers in a mount namespace (unshare -m)")
	_, err := exec.LookPath("unshare")
	testenv.Need(t, err == nil, "unshare (util-linux)")
	port := helloServer(t)
	var helpers []string
	for _, h := range []string{"slirp4netns", "pasta"} {
		if p, err := exec.LookPath(h); err == nil {
			helpers = append(helpers, p)
		}
	}
	df := fmt.Sprintf("FROM alpine\nRUN wget -q -T 5 -O /out http://127.0.0.1:%d/\n", port)
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		before := a.storeLayers(t)
		ctxDir := a.writeContext(t, "ctx-diag", df)
		r := a.hiddenCommand(t, helpers, "build", "--network=private", ctxDir)
		if r.code == 0 || !strings.Contains(r.stderr, "install the package slirp4netns or passt") || strings.Contains(r.stderr, "#2") {
			t.Errorf("--network=private without a helper: want a refusal before any step naming the packages\n%s", r)
		}
		r = a.hiddenCommand(t, helpers, "build", "--progress=plain", "-t", "diag", ctxDir)
		warnings := strings.Count(r.stderr, "RUN steps share the host's network, without isolation")
		if r.code != 0 || warnings != 1 {
			t.Errorf("default without a helper: want success on the host's network with one warning (%d)\n%s", warnings, r)
		} else if got := a.fileInImage(t, "diag", "out"); got != "hello-from-host" {
			t.Errorf("the RUN on the host's network got %q", got)
		}
		if a.rootless() {
			r = a.hiddenCommand(t, []string{"/dev/net/tun"}, "build", "--network=private", ctxDir)
			if r.code == 0 || !strings.Contains(r.stderr, "/dev/net/tun") || !strings.Contains(r.stderr, "chmod 0666 /dev/net/tun") {
				t.Errorf("--network=private with /dev/net/tun 0600: want the diagnosis naming the fix\n%s", r)
			}
		}
		a.assertNothingLeft(t, before)
	})
}

package runtime

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

// loopbackServer serves "hello-from-host" on the host's 127.0.0.1 and
// returns its port.
func loopbackServer(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "hello-from-host")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// natRuntime is a Runtime whose private steps use the named helper, or
// skips (fails in CI) when it cannot work here.
func natRuntime(t testing.TB, helper string) *Runtime {
	t.Helper()
	r := newRuntime(t)
	r.natOnly = helper
	_, err := r.natDriver()
	testenv.Need(t, err == nil, "user-mode NAT helper %s: %v (scripts/setup-host.sh installs passt and slirp4netns and makes /dev/net/tun 0666)", helper, err)
	return r
}

// helperChildren lists this process's children that are NAT helpers
// (pasta runs as passt or passt.avx2), zombies included.
func helperChildren(t testing.TB) []string {
	t.Helper()
	var left []string
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(raw)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		comm, f := s[open+1:end], strings.Fields(s[end+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) && (strings.HasPrefix(comm, "passt") || strings.HasPrefix(comm, "pasta") || comm == "slirp4netns") {
			left = append(left, comm+" "+f[0])
		}
	}
	return left
}

// probeScript reports what a step reaches: the host's loopback listener
// at 127.0.0.1 and as host.containers.internal, and its interfaces. The
// name is only tried when /etc/hosts has it: never a DNS query.
func probeScript(port int) string {
	return fmt.Sprintf(`
for h in 127.0.0.1 %[1]s; do
  if [ $h != 127.0.0.1 ] && ! grep -q $h /etc/hosts; then echo "$h=unresolved"; continue; fi
  if out=$(wget -q -T 3 -O - http://$h:%[2]d/ 2>/dev/null); then echo "$h=$out"; else echo "$h=unreachable"; fi
done
echo ifaces=$(ls /sys/class/net | sort | tr '\n' ' ')
grep -c %[1]s /etc/hosts || true
`, HostGatewayName, port)
}

// TestNetworkModes: what a step of each mode reaches of the host's
// loopback, which interfaces it has, and that no helper outlives it.
func TestNetworkModes(t *testing.T) {
	rootfs := sharedRootfs(t)
	port := loopbackServer(t)
	host := "127.0.0.1=hello-from-host"
	gateway := HostGatewayName + "=hello-from-host"
	tests := []struct {
		name   string
		mode   Network
		helper string
		want   []string // lines of the probe's output that must be there
	}{
		{"none", NetworkNone, "", []string{"127.0.0.1=unreachable", HostGatewayName + "=unresolved", "ifaces=lo", "0"}},
		{"default is none", "", "", []string{"127.0.0.1=unreachable", "ifaces=lo", "0"}},
		{"host", NetworkHost, "", []string{host, HostGatewayName + "=unresolved", "0"}},
		{"private pasta", NetworkPrivate, "pasta", []string{"127.0.0.1=unreachable", gateway, "1"}},
		{"private slirp4netns", NetworkPrivate, "slirp4netns", []string{"127.0.0.1=unreachable", gateway, "ifaces=lo tap0", "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRuntime(t)
			if tt.helper != "" {
				r = natRuntime(t, tt.helper)
			}
			res, out, errOut := run(t, r, rootfs, func(s *Spec) { s.Network = tt.mode }, probeScript(port))
			if res.ExitCode != 0 {
				t.Fatalf("exit %d: %s%s", res.ExitCode, out, errOut)
			}
			want := tt.want
			if tt.mode == NetworkHost {
				want = append(want, "ifaces="+hostInterfaces(t))
			}
			lines := map[string]bool{}
			for _, l := range strings.Split(out, "\n") {
				lines[strings.TrimSpace(l)] = true
			}
			for _, w := range want {
				if !lines[strings.TrimSpace(w)] {
					t.Errorf("output lacks %q:\n%s%s", w, out, errOut)
				}
			}
			r.reaping.Wait() // as Close does
			if left := helperChildren(t); len(left) > 0 {
				t.Errorf("NAT helpers left after the step: %v", left)
			}
		})
	}
}

// hostInterfaces lists the host's network interfaces as the probe does.
func hostInterfaces(t *testing.T) string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	slices.Sort(names)
	return strings.Join(names, " ")
}

// TestHostNetworkSys: a host-network step cannot mount sysfs (the network
// namespace is not its own), so it sees the host's /sys bound read-only,
// its submounts too.
func TestHostNetworkSys(t *testing.T) {
	rootfs, r := sharedRootfs(t), newRuntime(t)
	res, out, errOut := run(t, r, rootfs, func(s *Spec) { s.Network = NetworkHost }, `
test -d /sys/class/net/lo && echo has-lo
touch /sys/x 2>/dev/null && echo sys-writable
for m in $(awk '$2 ~ "^/sys" { print $2 }' /proc/mounts); do
  case " $(awk -v m="$m" '$2 == m { print $4 }' /proc/mounts | tr , ' ') " in *" ro "*) ;; *) echo "rw: $m";; esac
done`)
	if res.ExitCode != 0 || strings.TrimSpace(out) != "has-lo" {
		t.Errorf("exit %d, output %q (want only has-lo) %s", res.ExitCode, out, errOut)
	}
}

// TestPrivateNetworkFiles: a private step's /etc/hosts names the host's
// loopback, its resolv.conf has no local resolver, and neither is left in
// the rootfs.
func TestPrivateNetworkFiles(t *testing.T) {
	rootfs := alpineRootfs(t)
	r := natRuntime(t, "")
	for _, p := range []string{"etc/hosts", "etc/hostname", "etc/resolv.conf"} {
		os.Remove(filepath.Join(rootfs, p))
	}
	res, out, errOut := run(t, r, rootfs, func(s *Spec) { s.Network = NetworkPrivate; s.Hostname = "step1" },
		`cat /etc/hostname; grep host.containers.internal /etc/hosts | wc -l; grep -c '^nameserver' /etc/resolv.conf; grep -c '^nameserver 127\.' /etc/resolv.conf; echo x > /etc/hosts`)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %s%s", res.ExitCode, out, errOut)
	}
	if got := strings.Fields(out); len(got) != 4 || got[0] != "step1" || got[1] != "1" || got[2] == "0" || got[3] != "0" {
		t.Errorf("hostname, host.containers.internal lines, nameservers, local nameservers = %q", got)
	}
	for _, p := range []string{"etc/hosts", "etc/hostname", "etc/resolv.conf"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); err == nil {
			t.Errorf("/%s left in the rootfs", p)
		}
	}
}

func TestWithoutLocalResolvers(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"systemd-resolved stub", "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n",
			"options edns0 trust-ad\nsearch lan\nnameserver 10.0.2.3\n"},
		{"remote kept", "nameserver 192.0.2.53\n", "nameserver 192.0.2.53\n"},
		{"local dropped beside a remote", "nameserver ::1\nnameserver 192.0.2.53\n", "nameserver 192.0.2.53\n"},
		{"no file", "", "nameserver 10.0.2.3\n"},
		{"no final newline", "search lan", "search lan\nnameserver 10.0.2.3\n"},
		{"scoped link-local kept", "nameserver fe80::1%eth0\n", "nameserver fe80::1%eth0\n"},
	}
	for _, tt := range tests {
		if got := string(withoutLocalResolvers([]byte(tt.in), slirpDNS)); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestDefaultRoute4(t *testing.T) {
	header := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	tests := []struct {
		name, table, iface, gw string
	}{
		{"one default", "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\neth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", "eth0", "192.0.2.1"},
		{"lowest metric wins", "wlan0\t00000000\t0100A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\neth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n", "eth0", "10.0.0.1"},
		{"no gateway", "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", "", ""},
		{"empty", "", "", ""},
	}
	for _, tt := range tests {
		p := filepath.Join(t.TempDir(), "route")
		if err := os.WriteFile(p, []byte(header+tt.table), 0o644); err != nil {
			t.Fatal(err)
		}
		iface, gw, err := defaultRoute4(p)
		if tt.iface == "" {
			if err == nil {
				t.Errorf("%s: got %s via %s, want an error", tt.name, gw, iface)
			}
			continue
		}
		if err != nil || iface != tt.iface || gw.String() != tt.gw {
			t.Errorf("%s: got %s via %s (%v), want %s via %s", tt.name, gw, iface, err, tt.gw, tt.iface)
		}
	}
}

// TestNoNATHelperDiagnosis: with no helper installed, private is refused
// naming the package to install, and the default falls back to host with
// a warning that says so.
func TestNoNATHelperDiagnosis(t *testing.T) {
	if checkTun() != nil {
		t.Skip("/dev/net/tun is not usable here: the diagnosis names it first")
	}
	saved := natCandidates
	t.Cleanup(func() { natCandidates = saved })
	missing := func(name string) func() (natDriver, error) {
		return func() (natDriver, error) { return nil, fmt.Errorf("%s is not installed (%w)", name, exec.ErrNotFound) }
	}
	natCandidates = []func() (natDriver, error){missing("slirp4netns"), missing("pasta")}
	r := newRuntime(t)
	err := r.CheckNetwork(NetworkPrivate)
	if err == nil || !strings.Contains(err.Error(), "package slirp4netns or passt") || !strings.Contains(err.Error(), "pasta is not installed") {
		t.Errorf("CheckNetwork(private) = %v, want it to name passt and slirp4netns", err)
	}
	mode, warning := r.DefaultNetwork()
	if mode != NetworkHost || !strings.Contains(warning, "install the package slirp4netns or passt") {
		t.Errorf("DefaultNetwork() = %q, %q; want host and a warning naming passt", mode, warning)
	}
	_, err = r.Run(context.Background(), Spec{ID: "nonat", Rootfs: sharedRootfs(t), Args: []string{"true"}, Env: alpineEnv, Network: NetworkPrivate})
	if err == nil || !strings.Contains(err.Error(), "passt") {
		t.Errorf("Run(private) without a helper: %v, want the diagnosis", err)
	}
}

// BenchmarkRunNetworkModes measures a `true` step in each network mode,
// interleaved so that the machine's load affects them alike, and reports
// each as ms per step and as a ratio to none.
func BenchmarkRunNetworkModes(b *testing.B) {
	rootfs := alpineRootfs(b)
	modes := []struct {
		name string
		mode Network
		r    *Runtime
	}{{"none", NetworkNone, newRuntime(b)}, {"host", NetworkHost, newRuntime(b)}}
	for _, helper := range []string{"pasta", "slirp4netns"} {
		r := newRuntime(b)
		r.natOnly = helper
		if _, err := r.natDriver(); err != nil {
			b.Logf("%s: %v", helper, err)
			continue
		}
		modes = append(modes, struct {
			name string
			mode Network
			r    *Runtime
		}{helper, NetworkPrivate, r})
	}
	total := make([]time.Duration, len(modes))
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		for m, mode := range modes {
			start := time.Now()
			res, err := mode.r.Run(ctx, Spec{ID: fmt.Sprintf("b%d-%d", i, m), Rootfs: rootfs, Args: []string{"true"}, Env: alpineEnv, Network: mode.mode})
			if err != nil || res.ExitCode != 0 {
				b.Fatalf("%s: exit %d, %v", mode.name, res.ExitCode, err)
			}
			total[m] += time.Since(start)
		}
	}
	for m, mode := range modes {
		ms := float64(total[m].Microseconds()) / 1000 / float64(b.N)
		b.ReportMetric(ms, mode.name+"-ms/step")
		b.ReportMetric(float64(total[m])/float64(total[0]), mode.name+"/none")
	}
}

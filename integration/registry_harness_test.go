package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/stepexec/stepexec/internal/testenv"
)

// testRegistry is Debian's docker-registry (distribution 2.8) serving on
// 127.0.0.1 from a temp dir, started by a test and stopped with it.
type testRegistry struct {
	Host    string // 127.0.0.1:PORT
	dir     string // its config, storage and log
	cmd     *exec.Cmd
	caFile  string // with TLS: the CA that signed its certificate
	stopped bool
	exited  chan struct{} // closed when the process is gone
}

// registryOptions configure a testRegistry.
type registryOptions struct {
	users map[string]string // htpasswd basic auth: user → password
	tls   bool              // serve HTTPS with a certificate of a fresh CA
}

// startRegistry starts a registry; t's cleanup stops it.
func startRegistry(t *testing.T, opts registryOptions) *testRegistry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	testenv.Need(t, err == nil, "docker-registry (apt install docker-registry)")
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	r := &testRegistry{dir: dir}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n", filepath.Join(dir, "data"))
	if len(opts.users) > 0 {
		path := filepath.Join(dir, "htpasswd")
		writeHtpasswd(t, path, opts.users)
		fmt.Fprintf(&cfg, "auth:\n  htpasswd:\n    realm: test-realm\n    path: %s\n", path)
	}
	for attempt := 0; attempt < 5; attempt++ {
		r.Host = freeLoopbackAddr(t)
		conf := cfg.String() + fmt.Sprintf("http:\n  addr: %s\n", r.Host)
		if opts.tls {
			r.caFile, conf = writeCerts(t, dir), conf+fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
		}
		if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if r.start(t, bin) {
			t.Cleanup(r.Stop)
			return r
		}
	}
	t.Fatalf("docker-registry did not start; its log:\n%s", r.log())
	return nil
}

// start runs the registry and waits until it answers.
func (r *testRegistry) start(t *testing.T, bin string) bool {
	logf, err := os.Create(filepath.Join(r.dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	r.cmd = exec.Command(bin, "serve", filepath.Join(r.dir, "config.yml"))
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("starting docker-registry: %v", err)
	}
	exited := make(chan struct{})
	go func() { r.cmd.Wait(); close(exited) }()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	scheme := "http"
	if r.caFile != "" {
		scheme = "https"
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-exited:
			return false
		default:
		}
		if resp, err := client.Get(scheme + "://" + r.Host + "/v2/"); err == nil {
			resp.Body.Close()
			r.exited = exited
			return true
		}
	}
	r.cmd.Process.Kill()
	<-exited
	return false
}

// Stop kills the registry (tests of an unreachable registry call it).
func (r *testRegistry) Stop() {
	if r.stopped || r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.stopped = true
	r.cmd.Process.Kill()
	<-r.exited
}

func (r *testRegistry) log() string {
	raw, _ := os.ReadFile(filepath.Join(r.dir, "registry.log"))
	return string(raw)
}

// blobPath is where the registry keeps a blob's bytes.
func (r *testRegistry) blobPath(digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(r.dir, "data", "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
}

// freeLoopbackAddr returns 127.0.0.1:PORT with a port nothing listens on
// right now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func writeHtpasswd(t *testing.T, path string, users map[string]string) {
	t.Helper()
	var b strings.Builder
	for u, p := range users {
		hash, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", u, hash)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeCerts makes a CA and a certificate for 127.0.0.1 signed by it in
// dir (ca.crt, server.crt, server.key) and returns the CA's path.
func writeCerts(t *testing.T, dir string) string {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stepexec test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	for name, block := range map[string]*pem.Block{
		"ca.crt":     {Type: "CERTIFICATE", Bytes: caDER},
		"server.crt": {Type: "CERTIFICATE", Bytes: leafDER},
		"server.key": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "ca.crt")
}

// countingProxy fronts a plain-HTTP registry on another loopback port and
// records every request, to tell which blobs a push uploaded.
type countingProxy struct {
	Host string
	mu   sync.Mutex
	reqs []string // "METHOD path?query"
}

func startCountingProxy(t *testing.T, upstream string) *countingProxy {
	t.Helper()
	target, _ := url.Parse("http://" + upstream)
	rp := httputil.NewSingleHostReverseProxy(target)
	p := &countingProxy{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.Host = l.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p.mu.Lock()
		p.reqs = append(p.reqs, req.Method+" "+req.URL.RequestURI())
		p.mu.Unlock()
		rp.ServeHTTP(w, req)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return p
}

// requests returns the requests so far and forgets them.
func (p *countingProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.reqs
	p.reqs = nil
	return out
}

// uploadedBlobs lists the digests of blobs whose upload was completed
// (PUT …/blobs/uploads/…?digest=) among reqs: cross-repository mounts and
// blobs the registry had are not uploads.
func uploadedBlobs(reqs []string) []string {
	var out []string
	for _, r := range reqs {
		method, uri, _ := strings.Cut(r, " ")
		u, err := url.Parse(uri)
		if err != nil || method != http.MethodPut || !strings.Contains(u.Path, "/blobs/uploads/") {
			continue
		}
		out = append(out, u.Query().Get("digest"))
	}
	return out
}

// silentServer accepts connections and never answers: a hung registry.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

// withEnv returns a copy of a whose commands also get env (KEY=VALUE).
func (a *account) withEnv(env ...string) *account {
	c := *a
	c.env = append(append([]string(nil), a.env...), env...)
	return &c
}

// otherStore returns a copy of a with an empty store of its own.
func (a *account) otherStore(name string) *account {
	c := *a
	base := filepath.Dir(a.root)
	c.root, c.runRoot = filepath.Join(base, name+"-store"), filepath.Join(base, name+"-run")
	return &c
}

// ownHome gives a a fresh HOME and XDG_RUNTIME_DIR of its own, so that
// its registries.conf, auth files and certs.d are the test's, and no
// other user's or test's.
func (a *account) ownHome(t *testing.T) *account {
	t.Helper()
	base := filepath.Dir(a.root)
	c := a.withEnv()
	c.home = a.userDir(t, filepath.Join(base, "home"))
	runtimeDir := a.userDir(t, filepath.Join(base, "xdg-run"))
	os.Chmod(runtimeDir, 0o700)
	c.env = append(c.env, "XDG_RUNTIME_DIR="+runtimeDir)
	t.Cleanup(func() { stopPodmanPause(runtimeDir) })
	return c
}

// stopPodmanPause ends the pause process rootless podman leaves running
// for a runtime dir ("podman pause" in podman 4; the harness's own
// cleanup knows only catatonit).
func stopPodmanPause(runtimeDir string) {
	raw, err := os.ReadFile(filepath.Join(runtimeDir, "libpod", "tmp", "pause.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 1 {
		return
	}
	if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); strings.HasPrefix(string(comm), "podman") {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// userDir makes dir (and its parents) owned by a.
func (a *account) userDir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		for d := dir; d != filepath.Dir(a.root) && d != "/"; d = filepath.Dir(d) {
			os.Chown(d, a.uid, a.gid)
		}
	}
	return dir
}

// writeUserFile writes a file under a's home (or anywhere a owns).
func (a *account) writeUserFile(t *testing.T, path, content string) {
	t.Helper()
	a.userDir(t, filepath.Dir(path))
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		os.Chown(path, a.uid, a.gid)
	}
}

// podman runs podman as a on a podman store of its own.
func (a *account) podman(t *testing.T, args ...string) result {
	t.Helper()
	_, err := exec.LookPath("podman")
	testenv.Need(t, err == nil, "podman (apt install podman)")
	base := filepath.Dir(a.root)
	full := append([]string{"--root", filepath.Join(base, "podman-store"), "--runroot", filepath.Join(base, "podman-run"),
		"--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "none"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return runCmd(t, a.commandOf(ctx, "podman", full...))
}

// skopeo runs skopeo as a (plain HTTP allowed: the registries are on
// loopback) and returns its stdout.
func (a *account) skopeo(t *testing.T, args ...string) string {
	t.Helper()
	_, err := exec.LookPath("skopeo")
	testenv.Need(t, err == nil, "skopeo (apt install skopeo)")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := runCmd(t, a.commandOf(ctx, "skopeo", args...))
	if r.code != 0 {
		t.Fatalf("skopeo %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// assertClean checks that a's last command left nothing behind: no
// process, temp dir, snapshot or mount (assertNothingLeft), and no layer
// that no image, container or cache entry keeps (pulled images keep
// theirs).
func (a *account) assertClean(t *testing.T) {
	t.Helper()
	a.assertNothingLeft(t, a.storeLayers(t))
	if left := testenv.CheckStore(t, a.root).Unreferenced(); len(left) > 0 {
		t.Errorf("layers no image or cache entry keeps: %v", left)
	}
}

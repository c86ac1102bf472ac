package fetch

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// server serves handler on 127.0.0.1 and counts requests.
func server(t *testing.T, handler http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// entries lists dir's names: what a fetch left behind.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestFetchSavesTheFile(t *testing.T) {
	lastMod := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	content := []byte("hello from the server\n")
	cases := []struct {
		name      string
		path      string
		header    map[string]string
		wantName  string
		wantMtime time.Time
	}{
		{"Last-Modified is the mtime", "/files/tool.tar.gz", map[string]string{"Last-Modified": lastMod.Format(http.TimeFormat)}, "tool.tar.gz", lastMod},
		{"no Last-Modified: the epoch", "/a.txt", nil, "a.txt", time.Unix(0, 0)},
		{"unparsable Last-Modified: the epoch", "/a.txt", map[string]string{"Last-Modified": "yesterday"}, "a.txt", time.Unix(0, 0)},
		{"Content-Disposition does not name it", "/real", map[string]string{"Content-Disposition": `attachment; filename="other.bin"`}, "real", time.Unix(0, 0)},
		{"no path", "", nil, "__unnamed__", time.Unix(0, 0)},
		{"query dropped", "/get?file=x.tgz", nil, "get", time.Unix(0, 0)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.Write(content)
			})
			dir := t.TempDir()
			res, err := Fetch(context.Background(), srv.URL+tc.path, "", dir)
			if err != nil {
				t.Fatal(err)
			}
			want := Result{Path: filepath.Join(dir, tc.wantName), Name: tc.wantName, Digest: digest.FromBytes(content), Size: int64(len(content)), ModTime: tc.wantMtime}
			if res != want {
				t.Errorf("Result = %+v, want %+v", res, want)
			}
			got, err := os.ReadFile(res.Path)
			if err != nil || !bytes.Equal(got, content) {
				t.Errorf("content = %q, %v", got, err)
			}
			st, _ := os.Stat(res.Path)
			if st.Mode() != 0o600 || !st.ModTime().Equal(tc.wantMtime) {
				t.Errorf("mode %v mtime %v, want 0600 and %v", st.Mode(), st.ModTime(), tc.wantMtime)
			}
			if names := entries(t, dir); len(names) != 1 {
				t.Errorf("dir holds %v, want only the file", names)
			}
		})
	}
}

// TestFileName checks BuildKit's naming of ADD's URL file.
func TestFileName(t *testing.T) {
	for raw, want := range map[string]string{
		"http://h/foo":              "foo",
		"http://h/a/b/c.tar.gz":     "c.tar.gz",
		"http://h":                  "__unnamed__",
		"http://h/":                 "__unnamed__",
		"http://h/dir/":             "dir",
		"http://h/a%20b.txt":        "a b.txt",
		"http://h/%2e%2e":           "download",
		"http://h/x/%2E%2E":         "download",
		"http://h/a%0Ab":            "download",
		"http://h/a%2Fb":            "b",
		"https://h/f.txt?x=1#frag":  "f.txt",
		"http://user:pw@h:8080/z.z": "z.z",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := fileName(u); got != want {
			t.Errorf("fileName(%s) = %q, want %q", raw, got, want)
		}
	}
}

func TestFetchErrorsLeaveNothing(t *testing.T) {
	content := []byte("the real content")
	good := digest.FromBytes(content)
	wrong := digest.FromBytes([]byte("something else"))
	sha512 := digest.SHA512.FromBytes(content)
	cases := []struct {
		name     string
		status   int
		path     string
		checksum digest.Digest
		want     []string // in the error; "URL" is the request's URL
		noFetch  bool     // refused before any request
	}{
		{"404", 404, "/missing", "", []string{"fetch URL: server answered 404 Not Found"}, false},
		{"500", 500, "/f", "", []string{"URL", "500 Internal Server Error"}, false},
		{"checksum mismatch", 200, "/f", wrong, []string{"fetch URL: checksum mismatch", "the content is " + good.String(), "wants " + wrong.String()}, false},
		{"sha512 mismatch", 200, "/f", digest.SHA512.FromString("x"), []string{"the content is " + sha512.String()}, false},
		{"unsupported algorithm", 200, "/f", "md5:7e55db001d319a94b0b713529a756623", []string{"--checksum=md5:", "unsupported digest algorithm"}, true},
		{"no algorithm", 200, "/f", digest.Digest(good.Encoded()), []string{"invalid checksum digest format"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, n := server(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				w.Write(content)
			})
			dir := t.TempDir()
			u := srv.URL + tc.path
			_, err := Fetch(context.Background(), u, tc.checksum, dir)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if w = strings.ReplaceAll(w, "URL", u); !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to contain %q", err, w)
				}
			}
			if left := entries(t, dir); len(left) != 0 {
				t.Errorf("left %v", left)
			}
			if tc.noFetch && n.Load() != 0 {
				t.Errorf("%d requests made for an invalid checksum", n.Load())
			}
		})
	}
}

func TestFetchChecksumMatches(t *testing.T) {
	content := []byte("pinned")
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { w.Write(content) })
	for _, sum := range []digest.Digest{digest.FromBytes(content), digest.SHA384.FromBytes(content), digest.SHA512.FromBytes(content)} {
		res, err := Fetch(context.Background(), srv.URL+"/p", sum, t.TempDir())
		if err != nil {
			t.Errorf("%s: %v", sum.Algorithm(), err)
			continue
		}
		if res.Digest != digest.FromBytes(content) {
			t.Errorf("%s: Digest = %s, want the sha256 of the content", sum.Algorithm(), res.Digest)
		}
	}
}

func TestFetchRefusesOtherSchemes(t *testing.T) {
	for _, u := range []string{"ftp://127.0.0.1/x", "file:///etc/passwd", "http:///nohost", "git://h/r"} {
		_, err := Fetch(context.Background(), u, "", t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "only http:// and https://") {
			t.Errorf("%s: err = %v", u, err)
		}
	}
}

func TestFetchRedactsPassword(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	u := strings.Replace(srv.URL, "http://", "http://user:hunter2@", 1) + "/x"
	_, err := Fetch(context.Background(), u, "", t.TempDir())
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "user:xxxxx@") {
		t.Errorf("err = %v, want the URL without its password", err)
	}
}

func TestFetchFollowsRedirectKeepingTheName(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/latest" {
			http.Redirect(w, r, "/v1.2/tool-1.2.bin", http.StatusFound)
			return
		}
		w.Write([]byte("v1.2"))
	})
	res, err := Fetch(context.Background(), srv.URL+"/latest", "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(res.Path); res.Name != "latest" || string(got) != "v1.2" {
		t.Errorf("Name %q content %q, want latest / v1.2 (the name of the URL given, as BuildKit)", res.Name, got)
	}
}

// TestFetchGzipEncodingUndone: a Content-Encoding the transport asked for
// is undone (BuildKit relies on the same), a .tar.gz served as a file is not.
func TestFetchGzipEncodingUndone(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("plain text"))
	zw.Close()
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/encoded" {
			w.Header().Set("Content-Encoding", "gzip")
		}
		w.Write(gz.Bytes())
	})
	for p, want := range map[string][]byte{"/encoded": []byte("plain text"), "/file.gz": gz.Bytes()} {
		res, err := Fetch(context.Background(), srv.URL+p, "", t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(res.Path); !bytes.Equal(got, want) {
			t.Errorf("%s: content %q, want %q", p, got, want)
		}
	}
}

func TestFetchReplacesAnExistingFile(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("new")) })
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Fetch(context.Background(), srv.URL+"/f", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(res.Path); string(got) != "new" {
		t.Errorf("content %q", got)
	}
}

// TestFetchProxyFromEnvironment: HTTP_PROXY is honoured (the target name
// does not resolve; only the loopback proxy can answer). The fetch runs in
// a child test process: http.ProxyFromEnvironment reads the environment
// once per process, and other tests have used it already.
func TestFetchProxyFromEnvironment(t *testing.T) {
	const target = "http://stepexec-test.invalid/pkg.tgz"
	if os.Getenv("STEPEXEC_FETCH_PROXY_CHILD") == "1" {
		// Check the choice first, so a broken one makes no DNS query.
		var c Client
		c.init()
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		if u, err := c.transport.Proxy(req); err != nil || u == nil || u.String() != os.Getenv("HTTP_PROXY") {
			t.Fatalf("proxy for %s = %v, %v; want $HTTP_PROXY", target, u, err)
		}
		res, err := c.Fetch(context.Background(), target, "", t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(res.Path); string(got) != "via proxy" {
			t.Fatalf("content %q, want the proxy's", got)
		}
		return
	}
	var seen atomic.Value
	proxy, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.URL.String())
		w.Write([]byte("via proxy"))
	})
	cmd := exec.Command(os.Args[0], "-test.run=^TestFetchProxyFromEnvironment$", "-test.count=1")
	cmd.Env = append(os.Environ(), "STEPEXEC_FETCH_PROXY_CHILD=1", "HTTP_PROXY="+proxy.URL, "http_proxy="+proxy.URL, "NO_PROXY=", "no_proxy=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if seen.Load() != target {
		t.Errorf("the proxy saw %v, want %s", seen.Load(), target)
	}
}

// hang is a handler that blocks until the test ends, after writing first
// (nil: nothing, not even headers).
func hang(t *testing.T, first []byte) http.HandlerFunc {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	return func(w http.ResponseWriter, r *http.Request) {
		if first != nil {
			w.Write(first)
			w.(http.Flusher).Flush()
		}
		select {
		case <-done:
		case <-r.Context().Done():
		}
	}
}

func TestFetchTimeouts(t *testing.T) {
	trickle := func(w http.ResponseWriter, r *http.Request) {
		for {
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-time.After(50 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
	}
	cases := []struct {
		name    string
		handler http.HandlerFunc
		client  *Client
		want    string
	}{
		{"no response headers", hang(t, nil), &Client{HeaderTimeout: 300 * time.Millisecond}, "timeout awaiting response headers"},
		{"body stalls", hang(t, []byte("partial")), &Client{StallTimeout: 300 * time.Millisecond}, "no data received for 300ms"},
		{"whole download too long", trickle, &Client{Timeout: 500 * time.Millisecond}, "the download took longer than 500ms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := server(t, tc.handler)
			dir := t.TempDir()
			start := time.Now()
			_, err := tc.client.Fetch(context.Background(), srv.URL+"/f", "", dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), srv.URL+"/f") {
				t.Errorf("err = %v, want one naming the URL and containing %q", err, tc.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
			if left := entries(t, dir); len(left) != 0 {
				t.Errorf("left %v", left)
			}
		})
	}
}

// TestFetchConnectTimeout dials a loopback listener whose accept queue is
// full, so the kernel drops the SYN and the connect hangs.
func TestFetchConnectTimeout(t *testing.T) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	full := false
	for range 16 {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			full = true
			break
		}
		defer conn.Close()
	}
	if !full {
		t.Fatal("could not fill the accept queue")
	}
	c := &Client{ConnectTimeout: 300 * time.Millisecond}
	start := time.Now()
	_, err = c.Fetch(context.Background(), "http://"+addr+"/f", "", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "i/o timeout") {
		t.Errorf("err = %v, want a connect timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestFetchCancel(t *testing.T) {
	for name, first := range map[string][]byte{"before headers": nil, "during the body": []byte("part")} {
		t.Run(name, func(t *testing.T) {
			srv, _ := server(t, hang(t, first))
			dir := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(200*time.Millisecond, cancel)
			start := time.Now()
			_, err := Fetch(ctx, srv.URL+"/f", "", dir)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
			if left := entries(t, dir); len(left) != 0 {
				t.Errorf("left %v", left)
			}
		})
	}
}

// Package fetch downloads the source of `ADD <url>` the way BuildKit does
// (source/http/source.go, with the file name dockerfile2llb gives it):
// one file named after the URL's path, mode 0600, its mtime the response's
// Last-Modified, checked against --checksum before it is kept.
package fetch

import (
	"context"
	_ "crypto/sha256" // go-digest's algorithms need their hashes linked in
	_ "crypto/sha512"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/opencontainers/go-digest"
)

// Result is a downloaded file.
type Result struct {
	Path    string        // dir/Name
	Name    string        // the file's name, from the URL
	Digest  digest.Digest // sha256 of the content
	Size    int64
	ModTime time.Time // Last-Modified, else the Unix epoch (as BuildKit)
}

// Client fetches URLs. The zero value uses the defaults below. Proxies come
// from the environment through http.ProxyFromEnvironment (HTTP_PROXY,
// HTTPS_PROXY, NO_PROXY and their lower-case forms, read once per process).
type Client struct {
	ConnectTimeout time.Duration // TCP connect, and TLS handshake; default 30s
	HeaderTimeout  time.Duration // request sent to response headers; default 60s
	StallTimeout   time.Duration // longest wait for the next bytes of the body; default 60s
	Timeout        time.Duration // the whole download; default 1h

	once      sync.Once
	transport *http.Transport
}

var defaultClient Client

// Fetch downloads rawURL into dir with the default Client.
func Fetch(ctx context.Context, rawURL string, checksum digest.Digest, dir string) (Result, error) {
	return defaultClient.Fetch(ctx, rawURL, checksum, dir)
}

var (
	errStalled = errors.New("stalled")
	errTooLong = errors.New("too long")
)

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (c *Client) init() {
	c.once.Do(func() {
		connect := orDefault(c.ConnectTimeout, 30*time.Second)
		c.transport = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   connect,
			ResponseHeaderTimeout: orDefault(c.HeaderTimeout, 60*time.Second),
			ExpectContinueTimeout: time.Second,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		}
	})
}

// Fetch downloads rawURL (http or https; redirects followed) into dir,
// which must exist, as the file Result.Path. When checksum is set
// (sha256, sha384 or sha512) the content must match it. On any error —
// an HTTP status other than 2xx, a timeout, ctx's end, a mismatch —
// nothing is left in dir. Errors name the URL, without its password.
func (c *Client) Fetch(ctx context.Context, rawURL string, checksum digest.Digest, dir string) (Result, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return Result{}, fmt.Errorf("fetch %q: %w", rawURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Result{}, fmt.Errorf("fetch %s: only http:// and https:// URLs can be fetched", u.Redacted())
	}
	if checksum != "" {
		if err := checksum.Validate(); err != nil {
			return Result{}, fmt.Errorf("--checksum=%s: %w (want sha256:<hex>)", checksum, err)
		}
	}
	c.init()
	res, err := c.download(ctx, u, checksum, dir)
	if err != nil {
		return Result{}, fmt.Errorf("fetch %s: %w", u.Redacted(), err)
	}
	return res, nil
}

func (c *Client) download(ctx context.Context, u *url.URL, checksum digest.Digest, dir string) (Result, error) {
	ctx, cancelAll := context.WithTimeoutCause(ctx, orDefault(c.Timeout, time.Hour), errTooLong)
	defer cancelAll()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Result{}, err
	}
	req.Header.Set("User-Agent", "stepexec")
	// No Accept-Encoding of our own: the transport then asks for gzip and
	// undoes it, as BuildKit relies on.
	client := &http.Client{Transport: c.transport}
	resp, err := client.Do(req)
	if err != nil {
		return Result{}, c.explain(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Result{}, fmt.Errorf("server answered %s", resp.Status)
	}

	stall := orDefault(c.StallTimeout, 60*time.Second)
	timer := time.AfterFunc(stall, func() { cancel(errStalled) })
	defer timer.Stop()
	res, err := save(dir, fileName(u), &stallReader{resp.Body, timer, stall}, checksum, modTime(resp))
	if err != nil {
		return Result{}, c.explain(ctx, err)
	}
	return res, nil
}

// explain turns the error of a request cut short into what happened.
func (c *Client) explain(ctx context.Context, err error) error {
	switch context.Cause(ctx) {
	case errStalled:
		return fmt.Errorf("no data received for %v", orDefault(c.StallTimeout, 60*time.Second))
	case errTooLong:
		return fmt.Errorf("the download took longer than %v", orDefault(c.Timeout, time.Hour))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // it repeats the URL, which the caller names
	}
	return err
}

// save writes r to dir/name through a temporary file, kept only once the
// checksum is verified.
func save(dir, name string, r io.Reader, checksum digest.Digest, mtime time.Time) (res Result, err error) {
	f, err := os.CreateTemp(dir, ".fetch-*")
	if err != nil {
		return Result{}, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	content := digest.SHA256.Digester()
	w := io.MultiWriter(f, content.Hash())
	var pinned digest.Digester
	if checksum != "" && checksum.Algorithm() != digest.SHA256 {
		pinned = checksum.Algorithm().Digester()
		w = io.MultiWriter(w, pinned.Hash())
	}
	n, err := io.Copy(w, r)
	if err != nil {
		return Result{}, err
	}
	got := content.Digest()
	if pinned != nil {
		got = pinned.Digest()
	}
	if checksum != "" && got != checksum {
		return Result{}, fmt.Errorf("checksum mismatch: the content is %s, --checksum wants %s", got, checksum)
	}
	if err = f.Chmod(0o600); err != nil {
		return Result{}, err
	}
	if err = f.Close(); err != nil {
		return Result{}, err
	}
	if err = os.Chtimes(f.Name(), mtime, mtime); err != nil {
		return Result{}, err
	}
	p := filepath.Join(dir, name)
	if err = os.Rename(f.Name(), p); err != nil {
		return Result{}, err
	}
	return Result{Path: p, Name: name, Digest: content.Digest(), Size: n, ModTime: mtime}, nil
}

// modTime is the response's Last-Modified, else the Unix epoch, as
// BuildKit's http source sets it.
func modTime(resp *http.Response) time.Time {
	if t, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		return t
	}
	return time.Unix(0, 0)
}

// fileName is the name ADD gives a URL's file: the base of its path, or
// "__unnamed__" (dockerfile2llb/convert_copy.go), made safe as BuildKit's
// pathutil.SafeFileName does ("download" for "..", control characters).
// Content-Disposition is not consulted: ADD names the file itself.
func fileName(u *url.URL) string {
	name := "__unnamed__"
	if base := path.Base(u.Path); base != "." && base != "/" {
		name = base
	}
	name = strings.TrimSpace(name)
	if name == "" || name == "." || name == ".." || strings.ContainsFunc(name, unicode.IsControl) {
		return "download"
	}
	return name
}

// stallReader pushes the stall deadline back whenever bytes arrive.
type stallReader struct {
	r     io.Reader
	timer *time.Timer
	d     time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.timer.Reset(s.d)
	}
	return n, err
}

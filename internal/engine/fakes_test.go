package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/moby/patternmatcher"
	digest "github.com/opencontainers/go-digest"

	"github.com/stepexec/stepexec/dockerfile"
	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/runtime"
	"github.com/stepexec/stepexec/snapshot"
)

// fakeSnaps is a copy-based snapshotter: a layer is a directory holding
// the whole tree, a snapshot a copy of its parent's. It counts what is
// live so tests can check nothing is left.
type fakeSnaps struct {
	root   string
	mu     sync.Mutex
	layers map[string]string // id → tree dir
	live   map[string]string // key → dir
	n      int
}

func newFakeSnaps(t *testing.T) *fakeSnaps {
	return &fakeSnaps{root: t.TempDir(), layers: map[string]string{}, live: map[string]string{}}
}

func (f *fakeSnaps) newDir(parent string) (string, error) {
	f.mu.Lock()
	f.n++
	dir := filepath.Join(f.root, "d"+strconv.Itoa(f.n))
	src := f.layers[parent]
	f.mu.Unlock()
	if parent != "" && src == "" {
		return "", fmt.Errorf("unknown layer %s", parent)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	if src != "" {
		if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func (f *fakeSnaps) Prepare(ctx context.Context, key, parent string, forStep bool) (*snapshot.Snapshot, error) {
	return f.open(key, parent)
}

func (f *fakeSnaps) View(ctx context.Context, key, parent string, forStep bool) (*snapshot.Snapshot, error) {
	return f.open(key, parent)
}

func (f *fakeSnaps) open(key, parent string) (*snapshot.Snapshot, error) {
	dir, err := f.newDir(parent)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.live[key]; ok {
		return nil, fmt.Errorf("key %s in use", key)
	}
	f.live[key] = dir + "|" + parent
	return &snapshot.Snapshot{Key: key, Parent: parent, Dir: dir}, nil
}

func (f *fakeSnaps) take(key string) (dir, parent string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.live[key]
	if !ok {
		return "", "", fmt.Errorf("no snapshot %s", key)
	}
	delete(f.live, key)
	dir, parent, _ = strings.Cut(v, "|")
	return dir, parent, nil
}

func (f *fakeSnaps) Commit(ctx context.Context, key string) (snapshot.Committed, error) {
	dir, parent, err := f.take(key)
	if err != nil {
		return snapshot.Committed{}, err
	}
	sum := treeSum(dir)
	if parent != "" && sum == treeSum(f.layers[parent]) || parent == "" && sum == treeSum("") {
		os.RemoveAll(dir)
		return snapshot.Committed{Empty: true}, nil
	}
	h := sha256.Sum256([]byte(parent + sum))
	id := hex.EncodeToString(h[:])
	f.mu.Lock()
	f.layers[id] = dir
	f.mu.Unlock()
	return snapshot.Committed{Layer: snapshot.Layer{ID: id, Parent: parent, DiffID: digest.FromString(id), Size: 1}, Files: 1}, nil
}

func (f *fakeSnaps) Remove(ctx context.Context, key string) error {
	dir, _, err := f.take(key)
	if err != nil {
		return nil
	}
	return os.RemoveAll(dir)
}

func (f *fakeSnaps) liveKeys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.live {
		out = append(out, k)
	}
	return out
}

// treeSum is a digest of a tree's paths, modes and contents.
func treeSum(dir string) string {
	if dir == "" {
		return "empty"
	}
	h := sha256.New()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, _ := d.Info()
		fmt.Fprintf(h, "%s %v\n", rel, fi.Mode())
		if d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))
}

// fakeRunner interprets a RUN's script, one command a line:
//
//	write PATH TEXT   write TEXT to PATH in the rootfs (or in a mount)
//	env PATH          write the environment to PATH
//	exit N            exit with status N
//	block             wait until the step is cancelled
//	meet NAME         wait until as many steps as f.meet wants are met
//
// and records every spec it ran.
type fakeRunner struct {
	mu    sync.Mutex
	specs []runtime.Spec
	meetN int
	met   map[string]chan struct{}
	count map[string]int
	peak  int
	cur   int
}

func (f *fakeRunner) Run(ctx context.Context, spec runtime.Spec) (runtime.Result, error) {
	f.mu.Lock()
	f.specs = append(f.specs, spec)
	f.cur++
	f.peak = max(f.peak, f.cur)
	f.mu.Unlock()
	defer func() { f.mu.Lock(); f.cur--; f.mu.Unlock() }()
	if spec.OnStart != nil {
		spec.OnStart()
	}
	script := spec.Args[len(spec.Args)-1]
	for _, line := range strings.Split(script, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "write":
			p := f.hostPath(spec, fields[1])
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(strings.Join(fields[2:], " ")), 0o644); err != nil {
				return runtime.Result{ExitCode: 1}, nil
			}
		case "env":
			os.WriteFile(f.hostPath(spec, fields[1]), []byte(strings.Join(spec.Env, "\n")), 0o644)
		case "echo":
			io.WriteString(spec.Stdout, strings.Join(fields[1:], " ")+"\n")
		case "exit":
			n, _ := strconv.Atoi(fields[1])
			return runtime.Result{ExitCode: n}, nil
		case "block":
			<-ctx.Done()
			return runtime.Result{}, fmt.Errorf("step killed: %w", ctx.Err())
		case "meet":
			if err := f.meet(ctx, fields[1]); err != nil {
				return runtime.Result{}, err
			}
		}
	}
	return runtime.Result{}, nil
}

// hostPath maps a path in the step to the host: inside a bind mount's
// source when a mount covers it, else in the rootfs.
func (f *fakeRunner) hostPath(spec runtime.Spec, p string) string {
	for _, m := range spec.Mounts {
		if b, ok := m.Source.(runtime.Bind); ok && strings.HasPrefix(p+"/", m.Target+"/") {
			return filepath.Join(b.Path, strings.TrimPrefix(p, m.Target))
		}
	}
	return filepath.Join(spec.Rootfs, p)
}

// meet blocks until meetN steps have called meet with the same name: proof
// that they run at the same time.
func (f *fakeRunner) meet(ctx context.Context, name string) error {
	f.mu.Lock()
	if f.met == nil {
		f.met, f.count = map[string]chan struct{}{}, map[string]int{}
	}
	ch := f.met[name]
	if ch == nil {
		ch = make(chan struct{})
		f.met[name] = ch
	}
	f.count[name]++
	if f.count[name] == f.meetN {
		close(ch)
	}
	f.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fakeImages holds base images by name.
type fakeImages map[string]Base

func (f fakeImages) Resolve(ctx context.Context, ref string) (Base, error) {
	b, ok := f[ref]
	if !ok {
		return Base{}, fmt.Errorf("%w: %s", image.ErrNotFound, ref)
	}
	return b, nil
}

// fakeContext is a context directory without .dockerignore.
type fakeContext struct{ dir string }

func (c fakeContext) Dir() string                            { return c.dir }
func (c fakeContext) Ignore() *patternmatcher.PatternMatcher { return nil }

// testBuild is one engine build with fakes.
type testBuild struct {
	t      *testing.T
	snaps  *fakeSnaps
	runner *fakeRunner
	images fakeImages
	ctxDir string
	events *eventLog
}

func newTestBuild(t *testing.T) *testBuild {
	tb := &testBuild{t: t, snaps: newFakeSnaps(t), runner: &fakeRunner{}, images: fakeImages{}, ctxDir: t.TempDir(), events: &eventLog{}}
	// A base image "alpine" with a layer holding /etc/passwd and /etc/group.
	dir := filepath.Join(tb.snaps.root, "alpine")
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/sbin/nologin\napp:x:1000:1000::/home/app:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\nnobody:x:65534:\napp:x:1000:\nwheel:x:10:app\n"), 0o644)
	tb.snaps.layers["alpine-layer"] = dir
	var cfg Base
	cfg.Name, cfg.ID = "localhost/alpine:latest", "a1b2"
	cfg.Config.OS, cfg.Config.Architecture = "linux", dockerfile.BuildPlatform.Arch
	cfg.Config.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cfg.Config.Config.Cmd = []string{"/bin/sh"}
	cfg.Layers = []image.Layer{{ID: "alpine-layer", DiffID: digest.FromString("alpine")}}
	tb.images["alpine"] = cfg
	return tb
}

// solve parses df and builds it.
func (tb *testBuild) solve(ctx context.Context, df string, opts dockerfile.ParseOptions, mod ...func(*Request)) (*Result, error) {
	tb.t.Helper()
	g, err := dockerfile.Parse(strings.NewReader(df), "Dockerfile", opts)
	if err != nil {
		tb.t.Fatalf("parse: %v", err)
	}
	req := Request{Graph: g, Context: fakeContext{tb.ctxDir}, Progress: tb.events, BuildID: "0123456789abcdef"}
	for _, m := range mod {
		m(&req)
	}
	cache := filepath.Join(tb.snaps.root, "cache")
	return Solve(ctx, req, Deps{Snaps: tb.snaps, Runner: tb.runner, Images: tb.images, CacheDir: cache, TempDir: tb.t.TempDir()})
}

func (tb *testBuild) mustSolve(df string, opts dockerfile.ParseOptions, mod ...func(*Request)) *Result {
	tb.t.Helper()
	res, err := tb.solve(context.Background(), df, opts, mod...)
	if err != nil {
		tb.t.Fatalf("solve: %v", err)
	}
	if live := tb.snaps.liveKeys(); len(live) > 0 {
		tb.t.Errorf("snapshots left: %v", live)
	}
	return res
}

// file reads a file of the result's top layer.
func (tb *testBuild) file(res *Result, p string) string {
	tb.t.Helper()
	b, err := os.ReadFile(filepath.Join(tb.snaps.layers[res.State.Top()], p))
	if err != nil {
		tb.t.Fatalf("reading %s: %v", p, err)
	}
	return string(b)
}

// eventLog records progress events (safe for concurrent stages).
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) Event(e Event) { l.mu.Lock(); l.events = append(l.events, e); l.mu.Unlock() }
func (l *eventLog) Output(v Vertex) io.Writer {
	return writerFunc(func(b []byte) (int, error) { return len(b), nil })
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(b []byte) (int, error) { return w(b) }

package engine

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/patternmatcher"

	"github.com/stepexec/stepexec/dockerfile"
	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/internal/cache"
	"github.com/stepexec/stepexec/runtime"
	"github.com/stepexec/stepexec/snapshot"
	"github.com/stepexec/stepexec/snapshot/native"
)

// fakeRunner interprets a RUN's script, one command a line:
//
//	write PATH TEXT   write TEXT to PATH in the rootfs (or in a mount)
//	env PATH          write the environment to PATH
//	stamp PATH        write the time (a step whose layer differs every run)
//	sleep MS          sleep MS milliseconds
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
	onRun func(n int) // called as the n-th step (from 1) starts
}

func (f *fakeRunner) Run(ctx context.Context, spec runtime.Spec) (runtime.Result, error) {
	f.mu.Lock()
	f.specs = append(f.specs, spec)
	f.cur++
	f.peak = max(f.peak, f.cur)
	n, onRun := len(f.specs), f.onRun
	f.mu.Unlock()
	if onRun != nil {
		onRun(n)
	}
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
		case "stamp":
			os.WriteFile(f.hostPath(spec, fields[1]), []byte(time.Now().String()), 0o644)
		case "sleep":
			n, _ := strconv.Atoi(fields[1])
			time.Sleep(time.Duration(n) * time.Millisecond)
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

// testBuild is one engine build with fakes, on the native snapshotter.
type testBuild struct {
	t        *testing.T
	snaps    *native.Store
	snapRoot string
	runner   *fakeRunner
	images   fakeImages
	ctxDir   string
	events   *eventLog
	cache    *fakeCache  // nil: no build cache
	async    *asyncSnaps // non-nil: the Snapshotter stores layers after commits return
}

func newTestBuild(t *testing.T) *testBuild {
	root := t.TempDir()
	snaps, err := native.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := snaps.Close(); err != nil {
			t.Error(err)
		}
	})
	tb := &testBuild{t: t, snaps: snaps, snapRoot: root, runner: &fakeRunner{}, images: fakeImages{}, ctxDir: t.TempDir(), events: &eventLog{}}
	// A base image "alpine" with a layer holding /etc/passwd and /etc/group.
	layer := tb.commit("alpine", map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/sbin/nologin\napp:x:1000:1000::/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\nnobody:x:65534:\napp:x:1000:\nwheel:x:10:app\n",
	})
	var cfg Base
	cfg.Name, cfg.ID = "localhost/alpine:latest", "a1b2"
	cfg.Config.OS, cfg.Config.Architecture = "linux", dockerfile.BuildPlatform.Arch
	cfg.Config.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cfg.Config.Config.Cmd = []string{"/bin/sh"}
	cfg.Layers = []image.Layer{toImageLayer(layer)}
	tb.images["alpine"] = cfg
	return tb
}

// commit makes a base layer holding files.
func (tb *testBuild) commit(key string, files map[string]string) snapshot.Layer {
	tb.t.Helper()
	ctx := context.Background()
	snap, err := tb.snaps.Prepare(ctx, key, "")
	if err != nil {
		tb.t.Fatal(err)
	}
	for p, content := range files {
		full := filepath.Join(snap.Dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			tb.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			tb.t.Fatal(err)
		}
	}
	c, err := tb.snaps.Commit(ctx, key)
	if err != nil {
		tb.t.Fatal(err)
	}
	return c.Layer
}

// liveKeys lists the snapshots and views left in the store.
func (tb *testBuild) liveKeys() []string {
	entries, err := os.ReadDir(filepath.Join(tb.snapRoot, "snapshots"))
	if err != nil {
		tb.t.Fatal(err)
	}
	var keys []string
	for _, e := range entries {
		keys = append(keys, e.Name())
	}
	return keys
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
	deps := Deps{Snaps: tb.snaps, Runner: tb.runner, Images: tb.images, CacheDir: tb.t.TempDir(), TempDir: tb.t.TempDir()}
	if tb.async != nil {
		deps.Snaps = tb.async
	}
	if tb.cache != nil {
		deps.Cache, deps.HoldLayer = tb.cache, tb.holdLayer
	}
	return Solve(ctx, req, deps)
}

func (tb *testBuild) mustSolve(df string, opts dockerfile.ParseOptions, mod ...func(*Request)) *Result {
	tb.t.Helper()
	res, err := tb.solve(context.Background(), df, opts, mod...)
	if err != nil {
		tb.t.Fatalf("solve: %v", err)
	}
	if live := tb.liveKeys(); len(live) > 0 {
		tb.t.Errorf("snapshots left: %v", live)
	}
	return res
}

// file reads a file of the result's top layer, through a view.
func (tb *testBuild) file(res *Result, p string) string {
	tb.t.Helper()
	ctx := context.Background()
	v, err := tb.snaps.View(ctx, "read", res.State.Top())
	if err != nil {
		tb.t.Fatal(err)
	}
	defer tb.snaps.Remove(ctx, "read")
	b, err := os.ReadFile(filepath.Join(v.Dir, p))
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

// fakeCache is a build cache in memory.
type fakeCache struct {
	mu    sync.Mutex
	recs  map[cache.Key]cache.Record
	locks sync.Map // cache.Key → *sync.Mutex
}

func (c *fakeCache) Lock(ctx context.Context, k cache.Key) (func(), error) {
	m, _ := c.locks.LoadOrStore(k, &sync.Mutex{})
	m.(*sync.Mutex).Lock()
	return m.(*sync.Mutex).Unlock, nil
}

func (c *fakeCache) Get(k cache.Key) (cache.Record, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.recs[k]
	return r, ok, nil
}

func (c *fakeCache) Put(k cache.Key, r cache.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.recs == nil {
		c.recs = map[cache.Key]cache.Record{}
	}
	c.recs[k] = r
	return nil
}

// holdLayer is Deps.HoldLayer on the native store.
func (tb *testBuild) holdLayer(_ context.Context, id, parent string) (image.Layer, error) {
	l, err := tb.snaps.Layer(id)
	if err == nil && l.Parent != parent {
		err = fmt.Errorf("layer %s is on %q, not %q", id, l.Parent, parent)
	}
	return toImageLayer(l), err
}

package engine

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepexec/stepexec/dockerfile"
)

// cachedBuild is a testBuild with a build cache.
func cachedBuild(t *testing.T) *testBuild {
	tb := newTestBuild(t)
	tb.cache = &fakeCache{}
	return tb
}

// ranScripts is what the RUNs since spec n ran (each one's last argument).
func (tb *testBuild) ranScripts(n int) []string {
	tb.runner.mu.Lock()
	defer tb.runner.mu.Unlock()
	var out []string
	for _, s := range tb.runner.specs[n:] {
		out = append(out, strings.TrimSpace(s.Args[len(s.Args)-1]))
	}
	return out
}

func (tb *testBuild) specCount() int {
	tb.runner.mu.Lock()
	defer tb.runner.mu.Unlock()
	return len(tb.runner.specs)
}

func (tb *testBuild) cachedSteps() int {
	tb.events.mu.Lock()
	defer tb.events.mu.Unlock()
	n := 0
	for _, e := range tb.events.events {
		if e.Kind == StepCached {
			n++
		}
	}
	return n
}

func (tb *testBuild) writeContext(name, content string, mtime time.Time) {
	tb.t.Helper()
	p := filepath.Join(tb.ctxDir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		tb.t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		tb.t.Fatal(err)
	}
}

func TestCacheRepeatedBuildHitsEveryStep(t *testing.T) {
	tb := cachedBuild(t)
	tb.writeContext("f", "data", time.Unix(1e9, 0))
	df := "FROM alpine\nRUN write /a 1\nCOPY f /f\nWORKDIR /w\nRUN write /b 2\nLABEL x=y\n"
	first := tb.mustSolve(df, dockerfile.ParseOptions{})
	runs := tb.specCount()
	tb.events.events = nil
	second := tb.mustSolve(df, dockerfile.ParseOptions{})
	if ran := tb.ranScripts(runs); len(ran) != 0 {
		t.Errorf("a repeated build ran %q", ran)
	}
	if n := tb.cachedSteps(); n != 4 {
		t.Errorf("%d steps CACHED, want 4 (RUN, COPY, WORKDIR, RUN)", n)
	}
	if !slices.Equal(first.State.Layers(), second.State.Layers()) {
		t.Errorf("layers differ:\n%v\n%v", first.State.Layers(), second.State.Layers())
	}
	if first.State.Key() != second.State.Key() || !first.State.Stamp().Equal(second.State.Stamp()) {
		t.Errorf("key/stamp %s %v, then %s %v", first.State.Key(), first.State.Stamp(), second.State.Key(), second.State.Stamp())
	}
	if got := tb.file(second, "/f"); got != "data" {
		t.Errorf("/f = %q", got)
	}
}

// TestCacheKeyRule builds before, changes one thing, builds after, and
// checks which RUNs ran again.
func TestCacheKeyRule(t *testing.T) {
	old := time.Unix(1e9, 0)
	for _, tc := range []struct {
		name          string
		before, after string
		argsBefore    map[string]string
		argsAfter     map[string]string
		change        func(tb *testBuild) // between the builds
		want          []string            // the RUNs the second build runs
	}{
		{name: "nothing changed", before: "FROM alpine\nRUN write /a 1\n", want: nil},
		{name: "LABEL changes no RUN", before: "FROM alpine\nLABEL l=1\nRUN write /a 1\n", after: "FROM alpine\nLABEL l=2\nRUN write /a 1\n", want: nil},
		{name: "EXPOSE and CMD change no RUN", before: "FROM alpine\nEXPOSE 80\nCMD a\nRUN write /a 1\n", after: "FROM alpine\nEXPOSE 81\nCMD b\nRUN write /a 1\n", want: nil},
		{name: "ENV before a RUN", before: "FROM alpine\nENV E=1\nRUN write /a 1\n", after: "FROM alpine\nENV E=2\nRUN write /a 1\n", want: []string{"write /a 1"}},
		{name: "ENV after a RUN", before: "FROM alpine\nRUN write /a 1\nENV E=1\n", after: "FROM alpine\nRUN write /a 1\nENV E=2\n", want: nil},
		{name: "USER", before: "FROM alpine\nRUN write /a 1\n", after: "FROM alpine\nUSER app\nRUN write /a 1\n", want: []string{"write /a 1"}},
		{name: "SHELL", before: "FROM alpine\nRUN write /a 1\n", after: "FROM alpine\nSHELL [\"/bin/ash\", \"-c\"]\nRUN write /a 1\n", want: []string{"write /a 1"}},
		{name: "a changed RUN reruns those after it",
			before: "FROM alpine\nRUN write /a 1\nRUN write /b 1\nRUN write /c 1\n",
			after:  "FROM alpine\nRUN write /a 1\nRUN write /b 2\nRUN write /c 1\n",
			want:   []string{"write /b 2", "write /c 1"}},
		{name: "build arg: only the steps after its declaration",
			before:     "FROM alpine\nRUN write /a 1\nARG V\nRUN write /b 1\n",
			argsBefore: map[string]string{"V": "1"}, argsAfter: map[string]string{"V": "2"},
			want: []string{"write /b 1"}},
		{name: "build arg not declared: no step",
			before:     "FROM alpine\nRUN write /a 1\n",
			argsBefore: map[string]string{"V": "1"}, argsAfter: map[string]string{"V": "2"},
			want: nil},
		{name: "heredoc body", before: "FROM alpine\nRUN <<EOF\nwrite /a 1\nEOF\n", after: "FROM alpine\nRUN <<EOF\nwrite /a 2\nEOF\n", want: []string{"write /a 2"}},
		{name: "COPY source: same size and mtime, other bytes",
			before: "FROM alpine\nCOPY f /f\nRUN write /a 1\n",
			change: func(tb *testBuild) { tb.writeContext("f", "bbbb", old) },
			want:   []string{"write /a 1"}},
		{name: "COPY source: only the mtime",
			before: "FROM alpine\nCOPY f /f\nRUN write /a 1\n",
			change: func(tb *testBuild) { tb.writeContext("f", "aaaa", time.Now()) },
			want:   nil},
		{name: "COPY source: the mode",
			before: "FROM alpine\nCOPY f /f\nRUN write /a 1\n",
			change: func(tb *testBuild) { os.Chmod(filepath.Join(tb.ctxDir, "f"), 0o755) },
			want:   []string{"write /a 1"}},
		{name: "COPY of another file changed: no step",
			before: "FROM alpine\nCOPY f /f\nRUN write /a 1\n",
			change: func(tb *testBuild) { tb.writeContext("other", "x", old) },
			want:   nil},
		{name: "bind mount source content",
			before: "FROM alpine\nRUN --mount=type=bind,source=f,target=/m write /a 1\n",
			change: func(tb *testBuild) { tb.writeContext("f", "bbbb", old) },
			want:   []string{"write /a 1"}},
		{name: "COPY --from an unchanged stage",
			before: "FROM alpine AS s\nRUN write /s 1\nFROM alpine\nCOPY --from=s /s /s\nRUN write /a 1\n",
			after:  "FROM alpine AS s\nRUN write /s 1\nFROM alpine\nLABEL changed=1\nCOPY --from=s /s /s\nRUN write /a 1\n",
			want:   nil},
		{name: "COPY --from a changed stage",
			before: "FROM alpine AS s\nRUN write /s 1\nFROM alpine\nCOPY --from=s /s /s\nRUN write /a 1\n",
			after:  "FROM alpine AS s\nRUN write /s 2\nFROM alpine\nCOPY --from=s /s /s\nRUN write /a 1\n",
			want:   []string{"write /s 2", "write /a 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := cachedBuild(t)
			tb.writeContext("f", "aaaa", old)
			if tc.after == "" {
				tc.after = tc.before
			}
			tb.mustSolve(tc.before, dockerfile.ParseOptions{BuildArgs: tc.argsBefore})
			if tc.change != nil {
				tc.change(tb)
			}
			n := tb.specCount()
			tb.mustSolve(tc.after, dockerfile.ParseOptions{BuildArgs: tc.argsAfter})
			if got := tb.ranScripts(n); !slices.Equal(got, tc.want) {
				t.Errorf("second build ran %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNoCache(t *testing.T) {
	df := "FROM alpine AS a\nRUN write /a 1\nFROM alpine AS b\nRUN write /b 1\nFROM alpine\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n"
	for _, tc := range []struct {
		name string
		req  func(*Request)
		want []string
	}{
		{"--no-cache", func(r *Request) { r.NoCache = true }, []string{"write /a 1", "write /b 1"}},
		{"--no-cache-filter a", func(r *Request) { r.NoCacheFilter = []string{"a"} }, []string{"write /a 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := cachedBuild(t)
			tb.mustSolve(df, dockerfile.ParseOptions{})
			n := tb.specCount()
			res := tb.mustSolve(df, dockerfile.ParseOptions{}, tc.req)
			got := tb.ranScripts(n)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("ran %q, want %q", got, tc.want)
			}
			// The rebuilt stage's new layer is what the final stage copies
			// (its key is the same, its content need not be).
			if got := tb.file(res, "/a"); got != "1" {
				t.Errorf("/a = %q", got)
			}
			// The rebuilt results replace the old ones in the cache.
			n = tb.specCount()
			tb.mustSolve(df, dockerfile.ParseOptions{})
			if ran := tb.ranScripts(n); len(ran) != 0 {
				t.Errorf("the build after ran %q", ran)
			}
		})
	}
}

func TestCacheKeepsStepsBeforeAFailure(t *testing.T) {
	tb := cachedBuild(t)
	if _, err := tb.solve(t.Context(), "FROM alpine\nRUN write /a 1\nRUN exit 3\n", dockerfile.ParseOptions{}); err == nil {
		t.Fatal("a failing RUN succeeded")
	}
	n := tb.specCount()
	tb.mustSolve("FROM alpine\nRUN write /a 1\nRUN write /b 1\n", dockerfile.ParseOptions{})
	if got := tb.ranScripts(n); !slices.Equal(got, []string{"write /b 1"}) {
		t.Errorf("the fixed build ran %q, want only the fixed step", got)
	}
}

// A record whose layer is not on the state's top (a concurrent build
// replaced the parent step's record) is a miss, not a wrong image.
func TestCacheRecordOnAnotherParentIsAMiss(t *testing.T) {
	tb := cachedBuild(t)
	df := "FROM alpine\nRUN stamp /a\nRUN write /b 1\n"
	tb.mustSolve(df, dockerfile.ParseOptions{})
	firstRecs := maps.Clone(tb.cache.recs)
	tb.mustSolve(df, dockerfile.ParseOptions{}, func(r *Request) { r.NoCache = true })
	// Step 1's record goes back to the first build's layer; step 2's
	// stays on the second build's step-1 layer.
	for k, r := range firstRecs {
		if l, _ := tb.snaps.Layer(r.Layer); l.Parent == tb.images["alpine"].Layers[0].ID {
			tb.cache.recs[k] = r
		}
	}
	n := tb.specCount()
	res := tb.mustSolve(df, dockerfile.ParseOptions{})
	if got := tb.ranScripts(n); !slices.Equal(got, []string{"write /b 1"}) {
		t.Errorf("ran %q, want step 2 only", got)
	}
	ls := res.State.Layers()
	if l, _ := tb.snaps.Layer(ls[2].ID); l.Parent != ls[1].ID {
		t.Errorf("the image's layers do not chain: %v", ls)
	}
}

// Concurrent builds of one step run it once: the second waits for the
// first's result.
func TestCacheConcurrentBuildsRunAStepOnce(t *testing.T) {
	tb := cachedBuild(t)
	df := "FROM alpine\nRUN <<EOF\nstamp /a\nsleep 300\nEOF\nRUN write /b 1\n"
	results := make([]*Result, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = tb.solve(t.Context(), df, dockerfile.ParseOptions{}, func(r *Request) {
				r.BuildID = fmt.Sprintf("build%d-0123456789", i)
			})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := tb.specCount(); n != 2 {
		t.Errorf("%d RUNs ran for two builds of two steps, want 2: %q", n, tb.ranScripts(0))
	}
	if !slices.Equal(results[0].State.Layers(), results[1].State.Layers()) {
		t.Errorf("the builds' layers differ")
	}
}

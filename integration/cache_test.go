package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The build cache's classic bugs, each its own test, as the unprivileged
// user (the repeated build also as root).

// steps is what one build did, by instruction: the steps that ran (made a
// layer or found no change) and those that came from the cache.
type steps struct {
	ran, cached []string
	res         result
}

// build runs `stepexec build --progress=plain ARGS` and sorts its steps.
func (a *account) build(t *testing.T, args ...string) steps {
	t.Helper()
	r := a.mustRun(t, append([]string{"build", "--progress=plain"}, args...)...)
	return parseSteps(r)
}

func parseSteps(r result) steps {
	s := steps{res: r}
	text := map[string]string{}
	for _, line := range strings.Split(r.stderr+r.stdout, "\n") {
		id, rest, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(id, "#") {
			continue
		}
		switch {
		case strings.HasPrefix(rest, "["):
			if _, instr, ok := strings.Cut(rest, "] "); ok {
				text[id] = instr
			}
		case rest == "CACHED":
			s.cached = append(s.cached, text[id])
		case strings.HasPrefix(rest, "diff: "):
			s.ran = append(s.ran, text[id])
		}
	}
	return s
}

// testUser is the unprivileged account alone.
func testUser(t *testing.T) *account {
	a := accounts(t)[0]
	if !a.rootless() && os.Getuid() == 0 {
		t.Fatal("the first account is root")
	}
	a.importAlpine(t)
	return a
}

// writeFile writes a context file with a fixed mtime, owned by the account.
func (a *account) writeFile(t *testing.T, dir, name, content string, mtime time.Time) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(p, a.uid, a.gid)
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func wantSteps(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: %q, want %q", what, got, want)
	}
}

var fixedTime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

const copyThenRun = "FROM alpine\nCOPY f /f\nRUN cat /f > /seen\n"

func TestCacheSameSizeAndMtimeChangeInvalidates(t *testing.T) {
	a := testUser(t)
	dir := a.writeContext(t, "size-mtime", copyThenRun)
	a.writeFile(t, dir, "f", "aaaa", fixedTime)
	a.build(t, "-t", "sm", dir)
	a.writeFile(t, dir, "f", "bbbb", fixedTime)
	s := a.build(t, "-t", "sm", dir)
	wantSteps(t, "ran", s.ran, []string{"COPY f /f", "RUN cat /f > /seen"})
	if got := a.fileInImage(t, "sm", "seen"); got != "bbbb" {
		t.Errorf("/seen = %q after the change", got)
	}
}

func TestCacheMtimeOnlyChangeHits(t *testing.T) {
	a := testUser(t)
	dir := a.writeContext(t, "mtime", copyThenRun)
	a.writeFile(t, dir, "f", "aaaa", fixedTime)
	a.build(t, dir)
	a.writeFile(t, dir, "f", "aaaa", time.Now())
	s := a.build(t, dir)
	wantSteps(t, "ran", s.ran, nil)
	wantSteps(t, "cached", s.cached, []string{"COPY f /f", "RUN cat /f > /seen"})
}

func TestCacheContextCopiedElsewhereHits(t *testing.T) {
	a := testUser(t)
	dir := a.writeContext(t, "here", copyThenRun)
	a.writeFile(t, dir, "f", "aaaa", fixedTime)
	a.build(t, "-t", "here", dir)
	other := a.writeContext(t, "elsewhere/deeper", copyThenRun)
	a.writeFile(t, other, "f", "aaaa", time.Now())
	s := a.build(t, "-t", "elsewhere", other)
	wantSteps(t, "ran", s.ran, nil)
	if x, y := a.inspect(t, "here"), a.inspect(t, "elsewhere"); !slices.Equal(x.RootFS.DiffIDs, y.RootFS.DiffIDs) {
		t.Errorf("the copied context gave other layers: %v vs %v", x.RootFS.DiffIDs, y.RootFS.DiffIDs)
	}
}

func TestCacheBuildArgInvalidatesOnlyAfterItsDeclaration(t *testing.T) {
	a := testUser(t)
	dir := a.writeContext(t, "arg", "FROM alpine\nRUN echo before > /before\nARG V=default\nRUN echo \"$V\" > /v\nRUN echo after > /after\n")
	a.build(t, "--build-arg", "V=one", "-t", "arg", dir)
	s := a.build(t, "--build-arg", "V=two", "-t", "arg", dir)
	wantSteps(t, "cached", s.cached, []string{"RUN echo before > /before"})
	wantSteps(t, "ran", s.ran, []string{`RUN echo "$V" > /v`, "RUN echo after > /after"})
	if got := a.fileInImage(t, "arg", "v"); got != "two\n" {
		t.Errorf("/v = %q", got)
	}
	// Back to the first value: its results are still cached.
	s = a.build(t, "--build-arg", "V=one", dir)
	wantSteps(t, "ran", s.ran, nil)
}

func TestCacheEnvInvalidatesLabelDoesNot(t *testing.T) {
	a := testUser(t)
	df := func(env, label string) string {
		return "FROM alpine\nENV E=" + env + "\nLABEL l=" + label + "\nRUN echo \"$E\" > /e\n"
	}
	dir := a.writeContext(t, "env-label", df("1", "1"))
	a.build(t, dir)
	a.writeContext(t, "env-label", df("1", "2"))
	s := a.build(t, "-t", "label", dir)
	wantSteps(t, "ran after a LABEL change", s.ran, nil)
	if l := a.inspect(t, "label").Config.Labels["l"]; l != "2" {
		t.Errorf("label l = %q: the cached build kept the old config", l)
	}
	a.writeContext(t, "env-label", df("2", "2"))
	s = a.build(t, "-t", "env", dir)
	wantSteps(t, "ran after an ENV change", s.ran, []string{`RUN echo "$E" > /e`})
	if got := a.fileInImage(t, "env", "e"); got != "2\n" {
		t.Errorf("/e = %q", got)
	}
}

func TestCacheHeredocBodyInvalidates(t *testing.T) {
	a := testUser(t)
	df := func(word string) string {
		return "FROM alpine\nRUN <<EOF\necho " + word + " > /h\nEOF\nCOPY <<EOF /c\n" + word + "\nEOF\n"
	}
	dir := a.writeContext(t, "heredoc", df("one"))
	a.build(t, dir)
	a.writeContext(t, "heredoc", df("two"))
	s := a.build(t, "-t", "heredoc", dir)
	wantSteps(t, "ran", s.ran, []string{"RUN <<EOF", "COPY <<EOF /c"})
	if got := a.fileInImage(t, "heredoc", "h"); got != "two\n" {
		t.Errorf("/h = %q", got)
	}
}

// The key looked up is the key stored: an immediate rebuild is all hits,
// the same layers and the same image, and adds no layer.
func TestCacheRepeatedBuildIsAllHits(t *testing.T) {
	forEachAccount(t, func(t *testing.T, a *account) {
		a.importAlpine(t)
		dir := a.writeContext(t, "repeat", "FROM alpine AS base\nRUN echo b > /b\n"+
			"FROM base\nARG A=1\nENV E=$A\nWORKDIR /w\nCOPY Dockerfile /w/\nRUN --mount=type=bind,source=Dockerfile,target=/df cp /df /copy\nUSER nobody\nRUN id -u > /tmp/uid\nLABEL x=y\n")
		first := a.build(t, "-t", "repeat", dir)
		layers := a.storeLayers(t)
		id := a.inspect(t, "repeat")
		second := a.build(t, "-t", "repeat", dir)
		wantSteps(t, "ran", second.ran, nil)
		wantSteps(t, "cached", second.cached, first.ran)
		if len(second.cached) != 5 {
			t.Errorf("%d steps cached, want 5 (4 RUN/COPY/WORKDIR + the base's RUN)", len(second.cached))
		}
		again := a.inspect(t, "repeat")
		if !slices.Equal(id.RootFS.DiffIDs, again.RootFS.DiffIDs) || !id.Created.Equal(*again.Created) {
			t.Errorf("the rebuilt image differs:\n%v %v\n%v %v", id.RootFS.DiffIDs, id.Created, again.RootFS.DiffIDs, again.Created)
		}
		if after := a.storeLayers(t); !slices.Equal(after, layers) {
			t.Errorf("the cached rebuild added layers: %d → %d", len(layers), len(after))
		}
		if imgs := a.mustRun(t, "images", "-q").stdout; strings.Count(imgs, "\n") != 2 {
			t.Errorf("the rebuild made another image (want alpine and repeat):\n%s", imgs)
		}
	})
}

func TestCacheKeepsStepsBeforeAFailure(t *testing.T) {
	a := testUser(t)
	dir := a.writeContext(t, "fix", "FROM alpine\nRUN echo one > /one\nRUN echo two > /two\nRUN exit 7\n")
	r := a.run(t, "build", "--progress=plain", dir)
	if r.code == 0 || !strings.Contains(r.stderr, "Dockerfile:4") {
		t.Fatalf("the failing build: %s", r)
	}
	a.writeContext(t, "fix", "FROM alpine\nRUN echo one > /one\nRUN echo two > /two\nRUN true > /fixed\n")
	s := a.build(t, dir)
	wantSteps(t, "cached", s.cached, []string{"RUN echo one > /one", "RUN echo two > /two"})
	wantSteps(t, "ran", s.ran, []string{"RUN true > /fixed"})
}

func TestCacheCopyFromUnchangedStageHits(t *testing.T) {
	a := testUser(t)
	df := func(final string) string {
		return "FROM alpine AS tools\nRUN echo tool > /tool\nFROM alpine\nRUN echo " + final + " > /final\nCOPY --from=tools /tool /tool\n"
	}
	dir := a.writeContext(t, "from", df("one"))
	a.build(t, dir)
	// The final stage's own RUN changes; the stage it copies from does not.
	a.writeContext(t, "from", df("two"))
	s := a.build(t, "-t", "from", dir)
	wantSteps(t, "cached", s.cached, []string{"RUN echo tool > /tool"})
	wantSteps(t, "ran", s.ran, []string{"RUN echo two > /final", "COPY --from=tools /tool /tool"})
	// Nothing changes: the COPY --from hits too.
	s = a.build(t, dir)
	wantSteps(t, "ran", s.ran, nil)
	if got := a.fileInImage(t, "from", "tool"); got != "tool\n" {
		t.Errorf("/tool = %q", got)
	}
}

// Two builds of Dockerfiles with a common start, at once on one store:
// both succeed, the common step runs once and both images have its layer.
func TestCacheConcurrentOverlappingBuildsShareLayers(t *testing.T) {
	a := testUser(t)
	common := "FROM alpine\nRUN sleep 1; cat /proc/sys/kernel/random/uuid > /common\n"
	dirs := []string{
		a.writeContext(t, "overlap-0", common+"RUN echo zero > /zero\n"),
		a.writeContext(t, "overlap-1", common+"RUN echo one > /one\n"),
	}
	results := make(chan steps, len(dirs))
	for i, dir := range dirs {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var out, errb strings.Builder
			cmd := a.command(ctx, "build", "--progress=plain", "-t", fmt.Sprintf("overlap-%d", i), dir)
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			r := result{stdout: out.String(), stderr: errb.String()}
			if err != nil {
				r.code = -1
			}
			results <- parseSteps(r)
		}()
	}
	ranCommon := 0
	for range dirs {
		s := <-results
		if s.res.code != 0 {
			t.Fatalf("a concurrent build failed: %s", s.res)
		}
		if slices.Contains(s.ran, "RUN sleep 1; cat /proc/sys/kernel/random/uuid > /common") {
			ranCommon++
		}
	}
	if ranCommon != 1 {
		t.Errorf("the common step ran %d times, want once (the other build waits for its result)", ranCommon)
	}
	x, y := a.inspect(t, "overlap-0"), a.inspect(t, "overlap-1")
	if len(x.RootFS.DiffIDs) != 3 || len(y.RootFS.DiffIDs) != 3 || x.RootFS.DiffIDs[1] != y.RootFS.DiffIDs[1] {
		t.Errorf("the images do not share the common layer:\n%v\n%v", x.RootFS.DiffIDs, y.RootFS.DiffIDs)
	}
}

func TestNoCacheRerunsEveryStep(t *testing.T) {
	a := testUser(t)
	dir := a.writeContext(t, "nocache", "FROM alpine AS a\nRUN cat /proc/sys/kernel/random/uuid > /a\nFROM alpine\nRUN cat /proc/sys/kernel/random/uuid > /b\nCOPY --from=a /a /a\n")
	a.build(t, "-t", "nc", dir)
	before := a.inspect(t, "nc")
	s := a.build(t, "--no-cache", "-t", "nc", dir)
	wantSteps(t, "cached", s.cached, nil)
	if len(s.ran) != 3 {
		t.Errorf("--no-cache ran %q, want all 3 steps", s.ran)
	}
	if after := a.inspect(t, "nc"); slices.Equal(before.RootFS.DiffIDs, after.RootFS.DiffIDs) {
		t.Errorf("--no-cache kept the layers")
	}
	// --no-cache-filter a: only stage a's steps, and those reading them.
	s = a.build(t, "--no-cache-filter", "a", "-t", "nc", dir)
	wantSteps(t, "ran", s.ran, []string{"RUN cat /proc/sys/kernel/random/uuid > /a", "COPY --from=a /a /a"})
	wantSteps(t, "cached", s.cached, []string{"RUN cat /proc/sys/kernel/random/uuid > /b"})
}

// fileInImage reads a file of an image from the store's layer dirs, top
// layer first (the tests' files are plain files, never whited out).
func (a *account) fileInImage(t *testing.T, ref, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(a.root, "overlay-layers", "layers.json"))
	if err != nil {
		t.Fatal(err)
	}
	var layers []struct {
		ID     string `json:"id"`
		DiffID string `json:"diff-digest"`
	}
	if err := json.Unmarshal(raw, &layers); err != nil {
		t.Fatal(err)
	}
	byDiff := map[string]string{}
	for _, l := range layers {
		byDiff[l.DiffID] = l.ID
	}
	diffs := a.inspect(t, ref).RootFS.DiffIDs
	for i := len(diffs) - 1; i >= 0; i-- {
		b, err := os.ReadFile(filepath.Join(a.root, "overlay", byDiff[diffs[i].String()], "diff", name))
		if err == nil {
			return string(b)
		}
	}
	t.Fatalf("image %s has no /%s", ref, name)
	return ""
}

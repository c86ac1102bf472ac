package engine

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stepexec/stepexec/dockerfile"
)

func TestConfigInstructions(t *testing.T) {
	tb := newTestBuild(t)
	res := tb.mustSolve(`FROM alpine
ENV A=1 B="two words"
ENV C=${A}x
LABEL l=$B other=o
MAINTAINER me <me@x>
EXPOSE 80 53/udp 8000-8001
VOLUME /data
VOLUME ["/logs"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD check
SHELL ["/bin/ash", "-c"]
USER app:wheel
WORKDIR /srv
WORKDIR sub
CMD echo hi
ENTRYPOINT ["/entry"]
ONBUILD RUN later
`, dockerfile.ParseOptions{})
	img := res.State.Image()
	c := img.Config
	wantEnv := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1", "B=two words", "C=1x"}
	if !slices.Equal(c.Env, wantEnv) {
		t.Errorf("Env = %q", c.Env)
	}
	if c.Labels["l"] != "two words" || c.Labels["other"] != "o" || img.Author != "me <me@x>" {
		t.Errorf("labels %v author %q", c.Labels, img.Author)
	}
	for _, p := range []string{"80/tcp", "53/udp", "8000/tcp", "8001/tcp"} {
		if _, ok := c.ExposedPorts[p]; !ok {
			t.Errorf("port %s missing: %v", p, c.ExposedPorts)
		}
	}
	if _, ok := c.Volumes["/logs"]; !ok || len(c.Volumes) != 2 {
		t.Errorf("volumes %v", c.Volumes)
	}
	if c.StopSignal != "SIGINT" || c.Healthcheck == nil || c.Healthcheck.Interval != 5*time.Second || c.Healthcheck.Retries != 2 || c.Healthcheck.Test[0] != "CMD-SHELL" {
		t.Errorf("stopsignal %q healthcheck %+v", c.StopSignal, c.Healthcheck)
	}
	if c.User != "app:wheel" || c.WorkingDir != "/srv/sub" {
		t.Errorf("user %q workdir %q", c.User, c.WorkingDir)
	}
	// CMD is shell form with the stage's SHELL; ENTRYPOINT after CMD keeps it.
	if !slices.Equal(c.Cmd, []string{"/bin/ash", "-c", "echo hi"}) || !slices.Equal(c.Entrypoint, []string{"/entry"}) {
		t.Errorf("cmd %q entrypoint %q", c.Cmd, c.Entrypoint)
	}
	if !slices.Equal(c.OnBuild, []string{"RUN later"}) || !slices.Equal(c.Shell, []string{"/bin/ash", "-c"}) {
		t.Errorf("onbuild %q shell %q", c.OnBuild, c.Shell)
	}
	// WORKDIR made its directories owned by USER app (1000:1000, primary group).
	if len(res.State.Layers()) != 3 {
		t.Errorf("layers: %d, want base + 2 WORKDIR layers", len(res.State.Layers()))
	}
	var created []string
	for _, h := range img.History[0:] {
		created = append(created, h.CreatedBy)
	}
	for _, want := range []string{"ENV A=1 B=two words", "EXPOSE [53/udp 80/tcp 8000/tcp 8001/tcp]", "WORKDIR /srv/sub", `CMD ["/bin/ash" "-c" "echo hi"]`} {
		if !slices.Contains(created, want) {
			t.Errorf("history lacks %q: %q", want, created)
		}
	}
}

func TestEntrypointDropsInheritedCmd(t *testing.T) {
	tb := newTestBuild(t)
	res := tb.mustSolve("FROM alpine\nENTRYPOINT [\"/e\"]\n", dockerfile.ParseOptions{})
	if c := res.State.Image().Config; c.Cmd != nil {
		t.Errorf("inherited CMD kept: %q", c.Cmd)
	}
}

func TestArgs(t *testing.T) {
	tb := newTestBuild(t)
	df := `ARG GLOBAL=g
ARG TAG
FROM alpine
ARG GLOBAL
ARG LOCAL=l-${GLOBAL}
ARG FROMCLI
ARG TARGETARCH
ARG UNSET
RUN env /env.txt
`
	res := tb.mustSolve(df, dockerfile.ParseOptions{BuildArgs: map[string]string{"FROMCLI": "cli", "HTTP_PROXY": "http://proxy"}})
	env := strings.Split(tb.file(res, "/env.txt"), "\n")
	for _, want := range []string{"GLOBAL=g", "LOCAL=l-g", "FROMCLI=cli", "TARGETARCH=" + dockerfile.BuildPlatform.Arch, "HTTP_PROXY=http://proxy"} {
		if !slices.Contains(env, want) {
			t.Errorf("RUN env lacks %s: %q", want, env)
		}
	}
	for _, e := range env {
		if strings.HasPrefix(e, "UNSET=") {
			t.Errorf("an ARG without a value is set: %q", e)
		}
	}
	img := res.State.Image()
	for _, e := range img.Config.Env {
		if strings.HasPrefix(e, "LOCAL=") || strings.HasPrefix(e, "HTTP_PROXY") {
			t.Errorf("an ARG or proxy arg leaked into the image env: %q", e)
		}
	}
	last := img.History[len(img.History)-1].CreatedBy
	if !strings.HasPrefix(last, "RUN |5 GLOBAL=g LOCAL=l-g FROMCLI=cli TARGETARCH=") || strings.Contains(last, "proxy") {
		t.Errorf("RUN history %q", last)
	}
}

// An ARG set after a RUN does not reach it; ENV overrides an ARG of the
// same name after it.
func TestArgScope(t *testing.T) {
	tb := newTestBuild(t)
	res := tb.mustSolve("FROM alpine\nRUN env /before.txt\nARG V=arg\nENV V=env\nRUN env /after.txt\n", dockerfile.ParseOptions{})
	if strings.Contains(tb.file(res, "/before.txt"), "V=") {
		t.Error("the RUN before ARG saw it")
	}
	if !strings.Contains(tb.file(res, "/after.txt"), "V=env") {
		t.Errorf("after: %s", tb.file(res, "/after.txt"))
	}
}

func TestMultiStageSkipsUnneededAndRunsConcurrently(t *testing.T) {
	tb := newTestBuild(t)
	tb.runner.meetN = 2
	df := `FROM alpine AS a
RUN meet ab
RUN write /a.txt from-a
FROM alpine AS b
RUN meet ab
RUN write /b.txt from-b
FROM alpine AS unused
RUN exit 3
FROM a
RUN --mount=type=bind,from=b,target=/mnt/b write /seen.txt ok
`
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := tb.solve(ctx, df, dockerfile.ParseOptions{})
	if err != nil {
		t.Fatalf("solve: %v (stages a and b must run at the same time)", err)
	}
	if tb.file(res, "/a.txt") != "from-a" || tb.file(res, "/seen.txt") != "ok" {
		t.Errorf("result tree wrong")
	}
	for _, s := range tb.runner.specs {
		if strings.Contains(strings.Join(s.Args, " "), "exit 3") {
			t.Error("the unneeded stage ran")
		}
	}
}

func TestParallelLimit(t *testing.T) {
	tb := newTestBuild(t)
	df := "FROM alpine AS a\nRUN write /a x\nFROM alpine AS b\nRUN write /b x\nFROM alpine AS c\nRUN write /c x\nFROM alpine\nRUN --mount=from=a,target=/a --mount=from=b,target=/b --mount=from=c,target=/c write /d x\n"
	tb.mustSolve(df, dockerfile.ParseOptions{}, func(r *Request) { r.Parallel = 1 })
	if tb.runner.peak != 1 {
		t.Errorf("with Parallel=1, %d steps ran at once", tb.runner.peak)
	}
}

// A failing RUN stops the build with its location and exit code, cancels
// the stage running beside it and leaves no snapshot.
func TestFailureCancelsOthers(t *testing.T) {
	tb := newTestBuild(t)
	df := "FROM alpine AS slow\nRUN block\nFROM alpine AS bad\nRUN exit 7\nFROM alpine\nCOPY --from=slow /x /x\nCOPY --from=bad /y /y\n"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := tb.solve(ctx, df, dockerfile.ParseOptions{})
	var se *StepError
	if !errors.As(err, &se) || se.ExitCode != 7 || se.Location.Line != 4 {
		t.Fatalf("error %v, want exit code 7 at line 4", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the blocked stage was not cancelled")
	}
	if live := tb.liveKeys(); len(live) > 0 {
		t.Errorf("snapshots left: %v", live)
	}
}

func TestCancel(t *testing.T) {
	tb := newTestBuild(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	_, err := tb.solve(ctx, "FROM alpine\nRUN block\n", dockerfile.ParseOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want cancellation", err)
	}
	if live := tb.liveKeys(); len(live) > 0 {
		t.Errorf("snapshots left: %v", live)
	}
}

// Errors that can be known without running anything stop the build before
// its first step, all of them at once with their lines.
func TestErrorsBeforeAnyStep(t *testing.T) {
	tb := newTestBuild(t)
	df := `FROM nosuchimage AS missing
STOPSIGNAL NOTASIGNAL
FROM alpine
RUN write /x x
ARG M=999
COPY --chmod=${M} a /a
EXPOSE ${NOPE:-bad}port
RUN --mount=type=secret,id=tok,required=true true
COPY --from=missing /a /a
`
	_, err := tb.solve(context.Background(), df, dockerfile.ParseOptions{})
	if err == nil {
		t.Fatal("no error")
	}
	if len(tb.runner.specs) > 0 {
		t.Error("a step ran before the errors were reported")
	}
	for _, want := range []string{"Dockerfile:1:", `base image "nosuchimage" not found`, "Dockerfile:6:", "--chmod=999", "Dockerfile:7:", "badport", "Dockerfile:8:", `secret "tok" is required`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestOnbuildTriggers(t *testing.T) {
	tb := newTestBuild(t)
	base := tb.images["alpine"]
	base.Config.Config.OnBuild = []string{"RUN write /triggered.txt yes"}
	tb.images["withtrigger"] = base
	res := tb.mustSolve("FROM withtrigger\nRUN write /own.txt own\n", dockerfile.ParseOptions{})
	if tb.file(res, "/triggered.txt") != "yes" {
		t.Error("trigger did not run")
	}
	if len(res.State.Image().Config.OnBuild) != 0 {
		t.Error("triggers were inherited by the child image")
	}
	// A stage FROM a stage runs that stage's ONBUILD instructions.
	res = tb.mustSolve("FROM alpine AS parent\nONBUILD RUN write /from-parent.txt p\nFROM parent\nRUN true\n", dockerfile.ParseOptions{})
	if tb.file(res, "/from-parent.txt") != "p" {
		t.Error("stage trigger did not run")
	}
}

func TestMounts(t *testing.T) {
	tb := newTestBuild(t)
	df := "FROM alpine\nRUN --mount=type=cache,target=/cache,id=c1 --mount=type=secret,id=tok,env=TOKEN --mount=type=secret,id=tok,target=/s write /cache/kept.txt cached\nRUN --mount=type=cache,target=/cache,id=c1 --mount=type=tmpfs,target=/t env /env.txt\n"
	res := tb.mustSolve(df, dockerfile.ParseOptions{}, func(r *Request) { r.Secrets = map[string][]byte{"tok": []byte("s3cret")} })
	first := tb.runner.specs[0]
	if !slices.Contains(first.Env, "TOKEN=s3cret") {
		t.Errorf("secret env missing: %q", first.Env)
	}
	var sawSecret bool
	for _, m := range first.Mounts {
		if m.Target == "/s" {
			sawSecret = true
		}
	}
	if !sawSecret {
		t.Errorf("secret file mount missing: %+v", first.Mounts)
	}
	// The cache directory persisted into the second RUN and is not in a layer.
	second := tb.runner.specs[1]
	if p := tb.runner.hostPath(second, "/cache/kept.txt"); !fileHas(p, "cached") {
		t.Errorf("cache content not kept at %s", p)
	}
	for _, h := range res.State.Image().History {
		if strings.Contains(h.CreatedBy, "s3cret") {
			t.Errorf("secret in history: %q", h.CreatedBy)
		}
	}
}

func fileHas(p, want string) bool {
	b, err := osReadFile(p)
	return err == nil && string(b) == want
}

var osReadFile = os.ReadFile

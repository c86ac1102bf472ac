package conformance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRewrite(t *testing.T) {
	base := "127.0.0.1:5055/library/alpine:3.20"
	refs := map[string]string{"conf-base": "127.0.0.1:5055/conformance/conf-base:latest"}
	in := "ARG BASE=alpine:3.20\n" +
		"FROM alpine AS a\n" +
		"FROM --platform=$BUILDPLATFORM alpine:3.20.3\n" +
		"COPY --from=alpine /etc/os-release /x\n" +
		"RUN --mount=type=bind,from=alpine,target=/m true\n" +
		"FROM conf-base\n" +
		"RUN echo alpine-ish /alpine alpine.txt conf-base-2\n" +
		"FROM alpine:latest\n"
	want := "ARG BASE=" + base + "\n" +
		"FROM " + base + " AS a\n" +
		"FROM --platform=$BUILDPLATFORM " + base + "\n" +
		"COPY --from=" + base + " /etc/os-release /x\n" +
		"RUN --mount=type=bind,from=" + base + ",target=/m true\n" +
		"FROM " + refs["conf-base"] + "\n" +
		"RUN echo alpine-ish /alpine alpine.txt conf-base-2\n" +
		"FROM " + base + "\n"
	if got := Rewrite(in, base, refs); got != want {
		t.Errorf("Rewrite:\n%s\nwant:\n%s", got, want)
	}
}

func TestBuilderArgs(t *testing.T) {
	c := writeCase(t, map[string]string{
		"df/Build.Dockerfile": "# Syntax = docker/dockerfile:1\nFROM alpine\n", "ctx/f": "f", "s.txt": "s",
		SpecFile: `{"context": "ctx", "dockerfile": "df/Build.Dockerfile", "target": "t", "build_args": ["A=1", "E"],
			"env": {"E": "e"}, "secrets": [{"id": "f", "src": "s.txt"}, {"id": "v", "env": "E"}], "build_arg_files": ["ctx/f"]}`,
	})
	os.WriteFile(filepath.Join(c.Dir, "ctx/f"), []byte("F=1\n"), 0o644)
	p, err := c.Prepare(filepath.Join(t.TempDir(), "copy"))
	if err != nil {
		t.Fatal(err)
	}
	root := p.Root
	check := func(name string, got []string, want string) {
		t.Helper()
		if g := strings.ReplaceAll(strings.Join(got, " "), root, "R"); g != want {
			t.Errorf("%s:\n got %s\nwant %s", name, g, want)
		}
	}
	check("stepexec", p.StepexecArgs("OUT", 8080, "tag"),
		"build --progress=plain -f R/df/Build.Dockerfile --target t --build-arg-file R/ctx/f --build-arg A=1 --build-arg E "+
			"--build-arg HTTP_PORT=8080 --secret id=f,src=R/s.txt --secret id=v,env=E -t tag --output type=oci,dest=OUT R/ctx")
	bk, err := p.BuildKitArgs("type=oci,dest=OUT", 0)
	if err != nil {
		t.Fatal(err)
	}
	check("buildctl", bk, "build --progress=plain --frontend dockerfile.v0 --local context=R/ctx --local dockerfile=R/df "+
		"--opt filename=Build.Dockerfile --opt target=t --opt build-arg:F=1 --opt build-arg:A=1 --opt build-arg:E=e "+
		"--secret id=f,src=R/s.txt --secret id=v,env=E --opt cmdline=docker/dockerfile:1 --output type=oci,dest=OUT")
	bh, err := p.BuildahArgs("tag", 0)
	if err != nil {
		t.Fatal(err)
	}
	check("buildah", bh, "bud --layers --no-cache --pull=never --network=host --format=docker -t tag -f R/df/Build.Dockerfile --target t "+
		"--build-arg F=1 --build-arg A=1 --build-arg E=e --secret id=f,src=R/s.txt --secret id=v,env=E R/ctx")
	if env := strings.Join(p.Environ([]string{"HOME=/h"}), " "); env != "HOME=/h E=e" {
		t.Errorf("environ %s", env)
	}
}

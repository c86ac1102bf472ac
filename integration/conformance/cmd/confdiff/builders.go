package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/stepexec/stepexec/integration/conformance"
)

// builder is one of the builders the corpus runs on. A builder runs as the
// current user.
type builder interface {
	name() string
	// setup readies the builder and returns its build of `FROM alpine`.
	setup(ctx context.Context) (string, error)
	// build builds the case. With asTag it makes the image available to a
	// later FROM asTag and returns ""; else it returns the image's path.
	build(ctx context.Context, p *conformance.Prepared, port int, asTag string) (string, error)
	close()
	setLog(w io.Writer) // where the commands' output goes
}

// runner runs the builder's commands, appending their output to a log.
type runner struct {
	log io.Writer
	env []string
}

func (r *runner) setLog(w io.Writer) { r.log = w }

func (r *runner) run(ctx context.Context, env []string, prog string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	fmt.Fprintf(r.log, "$ %s %s\n", prog, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = append(append([]string(nil), r.env...), env...)
	var tail bytes.Buffer
	cmd.Stdout = io.MultiWriter(r.log, &tail)
	cmd.Stderr = cmd.Stdout
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", filepath.Base(prog), err, lastLines(tail.String(), 15))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// outPath is a new path for an image export under work/out.
func outPath(work, name, ext string) (string, error) {
	dir := filepath.Join(work, "out")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Join(dir, name+"-"+strconv.FormatInt(time.Now().UnixNano(), 36)+ext), nil
}

// baseCase is a one-line Dockerfile whose build is the builder's base.
func baseCase(dir string) (*conformance.Prepared, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM alpine\n"), 0o644); err != nil {
		return nil, err
	}
	c, err := conformance.LoadCase(dir)
	if err != nil {
		return nil, err
	}
	return &conformance.Prepared{Case: c, Root: dir, Context: dir}, nil
}

// stepexecBuilder builds with the binary under test in a store of its own.
type stepexecBuilder struct {
	runner
	binary, alpine, work string
}

func (b *stepexecBuilder) name() string { return "stepexec" }

func (b *stepexecBuilder) global() []string {
	return []string{"--root", filepath.Join(b.work, "store"), "--runroot", filepath.Join(b.work, "run")}
}

func (b *stepexecBuilder) setup(ctx context.Context) (string, error) {
	if err := b.run(ctx, nil, b.binary, append(b.global(), "import", b.alpine)...); err != nil {
		return "", err
	}
	p, err := baseCase(filepath.Join(b.work, "base"))
	if err != nil {
		return "", err
	}
	return b.build(ctx, p, 0, "")
}

func (b *stepexecBuilder) build(ctx context.Context, p *conformance.Prepared, port int, asTag string) (string, error) {
	out, err := outPath(b.work, p.Name, "")
	if err != nil {
		return "", err
	}
	var tags []string
	if asTag != "" {
		tags = []string{asTag}
	}
	args := append(b.global(), p.StepexecArgs(out, port, tags...)...)
	if err := b.run(ctx, p.Environ(nil), b.binary, args...); err != nil {
		return "", err
	}
	if asTag != "" {
		return "", nil
	}
	return out, nil
}

func (b *stepexecBuilder) close() {
	// The store holds files of the user's subordinate ids.
	exec.Command("podman", "unshare", "rm", "-rf", filepath.Join(b.work, "store"), filepath.Join(b.work, "run")).Run()
}

// buildkitBuilder drives the user's rootless buildkitd with buildctl. It
// cannot read local images: Alpine and the images of earlier builds come
// from a loopback registry.
type buildkitBuilder struct {
	runner
	registry, work string
}

func (b *buildkitBuilder) name() string { return "buildkit" }

func (b *buildkitBuilder) baseRef() string { return b.registry + "/library/alpine:3.20" }

func (b *buildkitBuilder) tagRef(tag string) string {
	return b.registry + "/conformance/" + tag + ":latest"
}

func (b *buildkitBuilder) setup(ctx context.Context) (string, error) {
	if err := b.run(ctx, nil, "buildctl", "debug", "workers"); err != nil {
		return "", fmt.Errorf("buildkitd is not reachable (scripts/conformance.sh starts it as root): %w", err)
	}
	p, err := baseCase(filepath.Join(b.work, "base"))
	if err != nil {
		return "", err
	}
	return b.build(ctx, p, 0, "")
}

func (b *buildkitBuilder) build(ctx context.Context, p *conformance.Prepared, port int, asTag string) (string, error) {
	refs := map[string]string{}
	for _, bf := range p.Spec.Before {
		refs[bf.Tag] = b.tagRef(bf.Tag)
	}
	if err := p.RewriteFiles(b.baseRef(), refs); err != nil {
		return "", err
	}
	out, err := outPath(b.work, p.Name, "")
	if err != nil {
		return "", err
	}
	output := "type=oci,dest=" + out + ",tar=false"
	if asTag != "" {
		output = "type=image,name=" + b.tagRef(asTag) + ",push=true,registry.insecure=true"
	}
	args, err := p.BuildKitArgs(output, port)
	if err != nil {
		return "", err
	}
	if err := b.run(ctx, p.Environ(nil), "buildctl", args...); err != nil {
		return "", err
	}
	if asTag != "" {
		return "", nil
	}
	return out, nil
}

func (b *buildkitBuilder) close() {}

// buildahBuilder uses the user's own buildah store, where
// scripts/conformance.sh imported Alpine as localhost/alpine:3.20.
type buildahBuilder struct {
	runner
	work string
	tags []string // made by this run, removed by close
}

func (b *buildahBuilder) name() string { return "buildah" }

func (b *buildahBuilder) setup(ctx context.Context) (string, error) {
	if err := b.run(ctx, nil, "buildah", "inspect", "--type", "image", "localhost/alpine:3.20"); err != nil {
		return "", fmt.Errorf("buildah has no localhost/alpine:3.20 (scripts/conformance.sh imports it as root): %w", err)
	}
	p, err := baseCase(filepath.Join(b.work, "base"))
	if err != nil {
		return "", err
	}
	return b.build(ctx, p, 0, "")
}

func (b *buildahBuilder) build(ctx context.Context, p *conformance.Prepared, port int, asTag string) (string, error) {
	tag := asTag
	if tag == "" {
		tag = "conformance-" + p.Name
	}
	b.tags = append(b.tags, tag)
	args, err := p.BuildahArgs(tag, port)
	if err != nil {
		return "", err
	}
	if err := b.run(ctx, p.Environ(nil), "buildah", args...); err != nil {
		return "", err
	}
	if asTag != "" {
		return "", nil
	}
	// A docker archive keeps the Docker-only config fields (Healthcheck,
	// OnBuild, Shell...) that a push to an OCI layout drops.
	out, err := outPath(b.work, p.Name, ".tar")
	if err != nil {
		return "", err
	}
	if err := b.run(ctx, nil, "buildah", "push", "-q", tag, "docker-archive:"+out); err != nil {
		return "", err
	}
	return out, nil
}

func (b *buildahBuilder) close() {
	if len(b.tags) > 0 {
		exec.Command("buildah", append([]string{"rmi", "-f"}, b.tags...)...).Run()
	}
}

package conformance

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
)

// StepexecArgs is the `stepexec build` command line for the case (without
// the global flags): build args as the case gives them ("K" left for
// stepexec to read from the environment, files passed as files), the
// image exported as an OCI layout to out and tagged with tags. port is
// the case's HTTP server, 0 for none.
func (p *Prepared) StepexecArgs(out string, port int, tags ...string) []string {
	args := []string{"build", "--progress=plain"}
	if p.Dockerfile != "" {
		args = append(args, "-f", p.Dockerfile)
	}
	if p.Spec.Target != "" {
		args = append(args, "--target", p.Spec.Target)
	}
	for _, f := range p.Spec.BuildArgFiles {
		args = append(args, "--build-arg-file", filepath.Join(p.Root, f))
	}
	for _, a := range p.Spec.BuildArgs {
		args = append(args, "--build-arg", a)
	}
	if port != 0 {
		args = append(args, "--build-arg", "HTTP_PORT="+strconv.Itoa(port))
	}
	for _, s := range p.secretArgs() {
		args = append(args, "--secret", s)
	}
	for _, t := range tags {
		args = append(args, "-t", t)
	}
	return append(args, "--output", "type=oci,dest="+out, p.Context)
}

// secretArgs are the --secret values, as docker build, buildctl and
// buildah all spell them.
func (p *Prepared) secretArgs() []string {
	var out []string
	for _, s := range p.Spec.Secrets {
		if s.Src != "" {
			out = append(out, "id="+s.ID+",src="+filepath.Join(p.Root, s.Src))
		} else {
			out = append(out, "id="+s.ID+",env="+s.Env)
		}
	}
	return out
}

// HTTPArg is the build arg naming the case's HTTP server's port.
func HTTPArg(port int) []string {
	if port == 0 {
		return nil
	}
	return []string{"HTTP_PORT=" + strconv.Itoa(port)}
}

// BuildKitArgs is the `buildctl build` command line. buildctl has no
// build-arg files and does not read build args from the environment, so
// they are resolved here. output is buildctl's --output value.
func (p *Prepared) BuildKitArgs(output string, port int) ([]string, error) {
	df := p.DockerfilePath()
	args := []string{"build", "--progress=plain", "--frontend", "dockerfile.v0",
		"--local", "context=" + p.Context, "--local", "dockerfile=" + filepath.Dir(df),
		"--opt", "filename=" + filepath.Base(df)}
	if p.Spec.Target != "" {
		args = append(args, "--opt", "target="+p.Spec.Target)
	}
	kvs, err := p.BuildArgs(HTTPArg(port)...)
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		args = append(args, "--opt", "build-arg:"+kv)
	}
	for _, s := range p.secretArgs() {
		args = append(args, "--secret", s)
	}
	if syntax, ok := syntaxDirective(df); ok {
		// The # syntax= frontend image cannot be pulled offline; a set
		// cmdline is how BuildKit's own forwarding tells the built-in
		// Dockerfile frontend to go ahead itself (frontend/dockerfile/builder/build.go).
		args = append(args, "--opt", "cmdline="+syntax)
	}
	return append(args, "--output", output), nil
}

// BuildahArgs is the `buildah bud` command line (as `buildah bud` has no
// build-arg files in 1.28, they are resolved here).
func (p *Prepared) BuildahArgs(tag string, port int) ([]string, error) {
	// --no-cache: buildah 1.28 reuses the layers of earlier runs, and then
	// a bind mount from a stage whose step was a cache hit finds nothing
	// ("couldn't find .../merged/made", 71-mount-bind), so its results
	// would depend on what an earlier run on the machine left.
	args := []string{"bud", "--layers", "--no-cache", "--pull=never", "--network=host", "--format=docker", "-t", tag}
	if p.Dockerfile != "" {
		args = append(args, "-f", p.Dockerfile)
	}
	if p.Spec.Target != "" {
		args = append(args, "--target", p.Spec.Target)
	}
	kvs, err := p.BuildArgs(HTTPArg(port)...)
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		args = append(args, "--build-arg", kv)
	}
	for _, s := range p.secretArgs() {
		args = append(args, "--secret", s)
	}
	return append(args, p.Context), nil
}

var syntaxRE = regexp.MustCompile(`(?mi)^#\s*syntax\s*=\s*(\S+)`)

func syntaxDirective(dockerfile string) (string, bool) {
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		return "", false
	}
	m := syntaxRE.FindSubmatch(data)
	if m == nil {
		return "", false
	}
	return string(m[1]), true
}

// imageWord finds an image name used as a word: after the start of a line,
// a blank or "=", and before a blank, a comma or the end of the line.
func imageWord(name string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)(^|[\s=])(` + regexp.QuoteMeta(name) + `)([\s,]|$)`)
}

var alpineRE = regexp.MustCompile(`(?m)(^|[\s=])(alpine(?::3\.20(?:\.3)?|:latest)?)([\s,]|$)`)

// Rewrite replaces, for a builder that cannot see local images, the word
// alpine (alpine:3.20, alpine:latest) with base and each word of refs'
// keys with its value: in FROM, --from=, from= and wherever else the word
// stands alone. The corpus uses "alpine" only to mean the image.
func Rewrite(text, base string, refs map[string]string) string {
	repl := func(re *regexp.Regexp, to string) {
		// Matches share their delimiters, so run until nothing changes.
		for {
			next := re.ReplaceAllString(text, "${1}"+to+"${3}")
			if next == text {
				return
			}
			text = next
		}
	}
	repl(alpineRE, base)
	for from, to := range refs {
		repl(imageWord(from), to)
	}
	return text
}

// RewriteFiles applies Rewrite to the prepared Dockerfile and to build
// args whose value is an image word.
func (p *Prepared) RewriteFiles(base string, refs map[string]string) error {
	df := p.DockerfilePath()
	data, err := os.ReadFile(df)
	if err != nil {
		return err
	}
	if err := os.WriteFile(df, []byte(Rewrite(string(data), base, refs)), 0o644); err != nil {
		return fmt.Errorf("rewriting %s: %w", df, err)
	}
	for i, a := range p.Spec.BuildArgs {
		p.Spec.BuildArgs[i] = Rewrite(a, base, refs)
	}
	return nil
}

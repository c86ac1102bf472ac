// Command confdiff runs the conformance corpus with several builders and
// compares what they built. scripts/conformance.sh is its user:
//
//	confdiff run    -corpus DIR -results DIR [-builders stepexec,buildkit,buildah] [CASE…]   (as the unprivileged user)
//	confdiff report -corpus DIR -results DIR -known FILE [-update] [CASE…]
//	confdiff result [-base IMAGE] IMAGE                                                      (one image's result, for debugging)
//
// run writes RESULTS/BUILDER/CASE.json (the image described as expected.json
// describes it) or CASE.error, and CASE.log. report compares every result
// with the case's golden expected.json (with -update, first rewritten from
// BuildKit's result) and exits 1 when stepexec or BuildKit differ in a way
// KNOWN-DIFFERENCES.md does not list.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/stepexec/stepexec/integration/conformance"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:])
	case "report":
		var ok bool
		ok, err = reportCmd(os.Args[2:])
		if err == nil && !ok {
			os.Exit(1)
		}
	case "result":
		err = resultCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "confdiff:", err)
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: confdiff run|report|result [flags] [CASE…] (see the package doc)")
	os.Exit(2)
}

func runCmd(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	corpus := fs.String("corpus", "", "the corpus directory")
	results := fs.String("results", "", "where to write the results")
	builders := fs.String("builders", "stepexec,buildkit,buildah", "builders to run, comma-separated")
	binary := fs.String("stepexec", "", "the stepexec binary")
	alpine := fs.String("alpine", "", "the Alpine minirootfs tarball stepexec imports")
	registry := fs.String("registry", "127.0.0.1:5055", "the loopback registry serving library/alpine:3.20 to BuildKit")
	work := fs.String("work", "", "scratch directory (default a new one under $TMPDIR)")
	fs.Parse(args)
	if *corpus == "" || *results == "" {
		return fmt.Errorf("run: -corpus and -results are required")
	}
	cases, err := conformance.Load(*corpus, fs.Args()...)
	if err != nil {
		return err
	}
	if *work == "" {
		if *work, err = os.MkdirTemp("", "confdiff-"); err != nil {
			return err
		}
		defer os.RemoveAll(*work)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, name := range strings.Split(*builders, ",") {
		b, err := newBuilder(name, *binary, *alpine, *registry, filepath.Join(*work, name))
		if err != nil {
			return err
		}
		err = runBuilder(ctx, b, cases, filepath.Join(*results, name))
		b.close()
		if err != nil {
			return err
		}
	}
	return nil
}

func newBuilder(name, binary, alpine, registry, work string) (builder, error) {
	env := []string{"HOME=" + os.Getenv("HOME"), "USER=" + os.Getenv("USER"), "PATH=" + os.Getenv("PATH"),
		"TMPDIR=" + os.TempDir(), "XDG_RUNTIME_DIR=" + os.Getenv("XDG_RUNTIME_DIR")}
	switch name {
	case "stepexec":
		if binary == "" || alpine == "" {
			return nil, fmt.Errorf("stepexec needs -stepexec BINARY and -alpine TARBALL")
		}
		return &stepexecBuilder{runner: runner{env: env}, binary: binary, alpine: alpine, work: work}, nil
	case "buildkit":
		host := os.Getenv("BUILDKIT_HOST")
		if host == "" {
			host = fmt.Sprintf("unix:///run/user/%d/buildkit/buildkitd.sock", os.Getuid())
		}
		return &buildkitBuilder{runner: runner{env: append(env, "BUILDKIT_HOST="+host)}, registry: registry, work: work}, nil
	case "buildah":
		return &buildahBuilder{runner: runner{env: env}, work: work}, nil
	}
	return nil, fmt.Errorf("unknown builder %q (stepexec, buildkit, buildah)", name)
}

// runBuilder builds every case with b into dir. A case that fails is a
// result (CASE.error); a builder that cannot start is an error.
func runBuilder(ctx context.Context, b builder, cases []*conformance.Case, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "setup.log"))
	if err != nil {
		return err
	}
	b.setLog(logf)
	start := time.Now()
	basePath, err := b.setup(ctx)
	logf.Close()
	if err != nil {
		return fmt.Errorf("%s: setting up: %w", b.name(), err)
	}
	base, err := conformance.Open(basePath)
	if err != nil {
		return fmt.Errorf("%s: base image: %w", b.name(), err)
	}
	fmt.Printf("%s: ready in %.1fs\n", b.name(), time.Since(start).Seconds())
	total := time.Now()
	for _, c := range cases {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		t := time.Now()
		res, err := runCase(ctx, b, c, base, dir)
		status := "ok"
		if err != nil {
			status = "FAILED"
			os.WriteFile(filepath.Join(dir, c.Name+".error"), []byte(err.Error()+"\n"), 0o644)
		} else {
			data, err := conformance.Encode(res)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, c.Name+".json"), data, 0o644); err != nil {
				return err
			}
		}
		fmt.Printf("%s: %-34s %-6s %.1fs\n", b.name(), c.Name, status, time.Since(t).Seconds())
	}
	fmt.Printf("%s: %d cases in %.1fs\n", b.name(), len(cases), time.Since(total).Seconds())
	return nil
}

// runCase prepares and builds one case (and the cases it builds FROM).
func runCase(ctx context.Context, b builder, c *conformance.Case, base v1.Image, dir string) (*conformance.Result, error) {
	os.Remove(filepath.Join(dir, c.Name+".error"))
	os.Remove(filepath.Join(dir, c.Name+".json"))
	logf, err := os.Create(filepath.Join(dir, c.Name+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	b.setLog(logf)
	scratch, err := os.MkdirTemp("", "confdiff-case-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	for i, bf := range c.Spec.Before {
		dep, err := conformance.LoadCase(filepath.Join(filepath.Dir(c.Dir), bf.Dir))
		if err != nil {
			return nil, err
		}
		if _, err := buildOne(ctx, b, dep, filepath.Join(scratch, fmt.Sprint("before", i)), bf.Tag); err != nil {
			return nil, fmt.Errorf("building %s as %s first: %w", bf.Dir, bf.Tag, err)
		}
	}
	out, err := buildOne(ctx, b, c, filepath.Join(scratch, "case"), "")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	img, err := conformance.Open(out)
	if err != nil {
		return nil, err
	}
	return conformance.Make(img, base, c.Spec.MustNotContain)
}

func buildOne(ctx context.Context, b builder, c *conformance.Case, dst, asTag string) (string, error) {
	p, err := c.Prepare(dst)
	if err != nil {
		return "", err
	}
	port, stop, err := p.Serve()
	if err != nil {
		return "", err
	}
	defer stop()
	return b.build(ctx, p, port, asTag)
}

func resultCmd(args []string) error {
	fs := flag.NewFlagSet("result", flag.ExitOnError)
	basePath := fs.String("base", "", "the builder's build of FROM alpine")
	fs.Parse(args)
	if fs.NArg() != 1 {
		return fmt.Errorf("result: want one image")
	}
	img, err := conformance.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	var base v1.Image
	if *basePath != "" {
		if base, err = conformance.Open(*basePath); err != nil {
			return err
		}
	}
	r, err := conformance.Make(img, base, nil)
	if err != nil {
		return err
	}
	data, err := conformance.Encode(r)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(data)
	return err
}

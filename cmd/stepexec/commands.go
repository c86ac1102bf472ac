package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/stepexec/stepexec"
	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/internal/safefile"
)

// buildFlags are docker build's flags that stepexec takes.
type buildFlags struct {
	tags, outputs, buildArgs, argFiles, secrets, labels      []string
	noCacheFilter                                            []string
	file, progress, target, iidfile, platform, pull, network string
	quiet, noCache, push                                     bool
	memory                                                   string
	pidsLimit                                                int64
	registry                                                 registryFlags
}

func buildCommand(ctx context.Context, g *globalFlags) *cobra.Command {
	var bf buildFlags
	cmd := &cobra.Command{
		Use:   "build [flags] CONTEXT",
		Short: "Build an image from a Dockerfile",
		Long: `Build an image from the Dockerfile in CONTEXT (a directory), as docker build does.

Stages the target does not need are skipped; independent stages build at the
same time. The image ID is printed on stdout when the build succeeds.`,
		Example: `  stepexec build -t app .
  stepexec build -f docker/Dockerfile --target test --build-arg VERSION=1.2 .
  stepexec build --secret id=npmrc,src=$HOME/.npmrc -t web .
  stepexec build -f - . < Dockerfile`,
		Args: exactArgs(1, "build needs one build context (a directory, or - for a tar stream on stdin), e.g. `stepexec build -t app .`"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, mode, err := bf.options(args[0], os.Stdin)
			if err != nil {
				return usageError{err}
			}
			opts.Registry = bf.registry.options(cmd.Flags())
			b, err := openBuilder(g)
			if err != nil {
				return err
			}
			defer b.Close()
			p := newProgress(mode, os.Stderr)
			opts.Progress = p
			opts.Registry.Report = p.transferLog()
			res, err := b.Build(ctx, opts)
			p.Finish(err)
			if err != nil {
				return err
			}
			if bf.iidfile != "" {
				if err := os.WriteFile(bf.iidfile, []byte(res.ID), 0o644); err != nil {
					return fmt.Errorf("--iidfile: %w", err)
				}
			}
			fmt.Fprintln(os.Stdout, res.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&bf.tags, "tag", "t", nil, "name the image (repeatable), e.g. -t app or -t app:1.0")
	f.StringVarP(&bf.file, "file", "f", "", "the Dockerfile (default CONTEXT/Dockerfile; - reads it from stdin)")
	f.StringArrayVarP(&bf.outputs, "output", "o", nil, "also export the image (repeatable): type=oci,dest=DIR|FILE.tar; type=docker,dest=FILE.tar; type=local,dest=DIR; type=tar,dest=FILE; type=registry,name=REF; type=image,name=REF[,push=true]")
	f.BoolVar(&bf.push, "push", false, "push the image to every -t name")
	f.StringVar(&bf.pull, "pull", "missing", "when to pull the images the Dockerfile names: missing, always (bare --pull) or never")
	f.Lookup("pull").NoOptDefVal = "always"
	bf.registry.add(f)
	f.StringVar(&bf.progress, "progress", "auto", "progress output: auto, plain or tty")
	f.StringVar(&bf.target, "target", "", "build this stage (default: the last)")
	f.StringArrayVar(&bf.buildArgs, "build-arg", nil, "set a build argument: KEY=VALUE, or KEY to take its value from the environment (repeatable)")
	f.StringArrayVar(&bf.argFiles, "build-arg-file", nil, "read build arguments from a file of KEY=VALUE lines (repeatable)")
	f.StringArrayVar(&bf.secrets, "secret", nil, "a secret for RUN --mount=type=secret: id=ID,src=PATH or id=ID,env=VAR (repeatable)")
	f.StringArrayVar(&bf.labels, "label", nil, "add an image label KEY=VALUE (repeatable)")
	f.StringVar(&bf.iidfile, "iidfile", "", "write the image ID to this file")
	f.StringVar(&bf.network, "network", "default", "network of RUN steps without a --network of their own: default (private if slirp4netns or pasta works here, else host), none, host or private")
	f.StringVar(&bf.platform, "platform", "", "target platform; only this machine's (linux/"+goruntime.GOARCH+") can be built")
	f.BoolVarP(&bf.quiet, "quiet", "q", false, "print only the image ID (no progress)")
	f.BoolVar(&bf.noCache, "no-cache", false, "rebuild every step instead of using the build cache (the results are cached again)")
	f.StringSliceVar(&bf.noCacheFilter, "no-cache-filter", nil, "rebuild the steps of these stages (names, comma-separated or repeated) without the cache")
	f.StringVarP(&bf.memory, "memory", "m", "", "limit each RUN step's memory, e.g. 512m or 2g (as root, or rootless with cgroup v2 delegation)")
	f.Int64Var(&bf.pidsLimit, "pids-limit", 0, "limit each RUN step's processes and threads (0 or -1: no limit; as root, or rootless with cgroup v2 delegation)")
	return cmd
}

// parseOutputs reads docker's --output CSV syntax.
func parseOutputs(specs []string) ([]stepexec.Output, error) {
	outs := make([]stepexec.Output, 0, len(specs))
	for _, spec := range specs {
		out, err := stepexec.ParseOutput(spec)
		if err != nil {
			return nil, err
		}
		outs = append(outs, out)
	}
	return outs, nil
}

func progressMode(s string) (string, error) {
	switch s {
	case "plain", "tty":
		return s, nil
	case "auto", "":
		if term.IsTerminal(int(os.Stderr.Fd())) {
			return "tty", nil
		}
		return "plain", nil
	}
	return "", fmt.Errorf("--progress %q: want auto, plain or tty", s)
}

func importCommand(ctx context.Context, g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "import TARBALL [NAME...]",
		Short: "Import a root filesystem tarball (plain, gzip, bzip2, xz or zstd; - for stdin) as a base image",
		Long: "Import a root filesystem tarball as a one-layer base image.\n\n" +
			"Without NAMEs, the image is named after the tarball's /etc/os-release:\n" +
			"Alpine 3.20.3 becomes alpine:3.20.3, alpine:3.20 and alpine:latest, so\n" +
			"`FROM alpine` and `FROM alpine:3.20` find it.",
		Args: minArgs(1, "import needs a tarball: `stepexec import alpine-minirootfs.tar.gz`"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r io.Reader = os.Stdin
			source := "-"
			if args[0] != "-" {
				f, err := safefile.Open(args[0])
				var nr *safefile.NotRegularError
				if errors.As(err, &nr) {
					return fmt.Errorf("%w (to import from a pipe, give - and feed it on stdin)", err)
				}
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
				source = filepath.Base(args[0])
			}
			b, err := openBuilder(g)
			if err != nil {
				return err
			}
			defer b.Close()
			res, err := b.Import(ctx, r, stepexec.ImportOptions{Names: args[1:], Source: source})
			if err != nil {
				return err
			}
			for _, n := range res.Image.Names {
				fmt.Fprintln(os.Stderr, "Tagged "+n)
			}
			if res.Stats.SquashedOwners > 0 {
				fmt.Fprintf(os.Stderr, "note: --single-uid: %d files owned by other ids are owned by root in the image\n", res.Stats.SquashedOwners)
			}
			if res.Stats.SkippedDevices > 0 {
				fmt.Fprintf(os.Stderr, "note: %d device nodes were skipped (they cannot be created without root)\n", res.Stats.SkippedDevices)
			}
			fmt.Fprintln(os.Stdout, "sha256:"+res.Image.ID)
			return nil
		},
	}
}

func imagesCommand(g *globalFlags) *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:   "images",
		Short: "List images",
		Args:  exactArgs(0, "images takes no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := openBuilder(g)
			if err != nil {
				return err
			}
			defer b.Close()
			imgs, err := b.Images().List()
			if err != nil {
				return err
			}
			if quiet {
				for _, img := range imgs {
					fmt.Println(img.ShortID())
				}
				return nil
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(w, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
			for _, img := range imgs {
				created := units.HumanDuration(time.Since(img.Created)) + " ago"
				size := units.HumanSizeWithPrecision(float64(img.Size), 3)
				if len(img.Names) == 0 {
					fmt.Fprintf(w, "<none>\t<none>\t%s\t%s\t%s\n", img.ShortID(), created, size)
				}
				for _, n := range img.Names {
					repo, tag := image.SplitName(n)
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", repo, tag, img.ShortID(), created, size)
				}
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	return cmd
}

func inspectCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Print an image's OCI image config as JSON",
		Args:  exactArgs(1, "inspect needs one image name or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := openBuilder(g)
			if err != nil {
				return err
			}
			defer b.Close()
			img, err := b.Images().Get(args[0])
			if err != nil {
				return err
			}
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			enc.SetEscapeHTML(false) // created_by holds shell: keep > and & readable
			return enc.Encode(img.Config)
		},
	}
}

func rmiCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rmi IMAGE...",
		Short: "Remove images (untag a name; delete the image with its last name)",
		Args:  minArgs(1, "rmi needs at least one image name or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := openBuilder(g)
			if err != nil {
				return err
			}
			defer b.Close()
			// Like docker rmi: remove what can be, report the rest.
			var failed []error
			for _, ref := range args {
				done, err := b.Images().Remove(ref)
				if err != nil {
					failed = append(failed, err)
					continue
				}
				for _, n := range done.Untagged {
					fmt.Println("Untagged: " + n)
				}
				if done.Deleted != "" {
					fmt.Println("Deleted: sha256:" + done.Deleted)
				}
				if done.Kept != "" {
					fmt.Fprintf(os.Stderr, "note: image sha256:%s is in use by a running build: it is deleted, with its layers, when that build ends\n", done.Kept)
				}
			}
			return errors.Join(failed...)
		},
	}
}

func exactArgs(n int, msg string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s", msg)}
		}
		return nil
	}
}

func minArgs(n int, msg string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usageError{fmt.Errorf("%s", msg)}
		}
		return nil
	}
}

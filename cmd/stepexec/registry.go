package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/stepexec/stepexec"
)

// registryFlags are podman's flags for talking to registries.
type registryFlags struct {
	tlsVerify bool
	certDir   string
	authFile  string
}

func (r *registryFlags) add(f *pflag.FlagSet) {
	f.BoolVar(&r.tlsVerify, "tls-verify", true, "require HTTPS with a verified certificate (default: as registries.conf says; a loopback registry may be plain HTTP); --tls-verify=false allows plain HTTP and unverified TLS")
	f.StringVar(&r.certDir, "cert-dir", "", "use the certificates (ca.crt, cert.pem, key.pem) in this directory for every registry")
	f.StringVar(&r.authFile, "authfile", "", "the credentials file (default $REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json)")
}

// options gives the registry options; --tls-verify counts only when given.
func (r *registryFlags) options(f *pflag.FlagSet) stepexec.RegistryOptions {
	opts := stepexec.RegistryOptions{CertDir: r.certDir, AuthFile: r.authFile}
	if f.Changed("tls-verify") {
		v := r.tlsVerify
		opts.TLSVerify = &v
	}
	return opts
}

func pullCommand(ctx context.Context, g *globalFlags) *cobra.Command {
	var rf registryFlags
	var quiet bool
	cmd := &cobra.Command{
		Use:   "pull [flags] IMAGE",
		Short: "Pull an image from a registry into the store",
		Long: `Pull an image from a registry into the store, where podman sees it too.

A short name (alpine) resolves as podman resolves it (registries.conf's
aliases, then its unqualified-search-registries), else to docker.io/library.
A multi-platform image gives this machine's linux image. The image ID is
printed on stdout.`,
		Example: "  stepexec pull alpine:3.20\n  stepexec pull 127.0.0.1:5000/app@sha256:…",
		Args:    exactArgs(1, "pull needs one image reference, e.g. `stepexec pull alpine`"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := openBuilder(g)
			if err != nil {
				return err
			}
			defer b.Close()
			opts := rf.options(cmd.Flags())
			if !quiet {
				opts.Report = os.Stderr
			}
			img, err := b.Pull(ctx, args[0], opts)
			if err != nil {
				return err
			}
			fmt.Println("sha256:" + img.ID)
			return nil
		},
	}
	rf.add(cmd.Flags())
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the image ID")
	return cmd
}

func pushCommand(ctx context.Context, g *globalFlags) *cobra.Command {
	var rf registryFlags
	var quiet, force bool
	var compression, digestFile string
	cmd := &cobra.Command{
		Use:   "push [flags] IMAGE [DESTINATION]",
		Short: "Push an image to a registry",
		Long: `Push a stored image to a registry: to DESTINATION (a reference naming a
registry, docker:// optional), else to the name IMAGE matched. Layers are
gzip-compressed (--compression-format=zstd for zstd); blobs the registry
has are not uploaded again. The manifest's digest is printed on stdout.`,
		Example: "  stepexec push registry.example.com/app:1.0\n  stepexec push app 127.0.0.1:5000/app:1.0",
		Args:    rangeArgs(1, 2, "push needs an image and optionally a destination: `stepexec push app registry.example.com/app`"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dest := ""
			if len(args) == 2 {
				dest = args[1]
			}
			b, err := openBuilder(g)
			if err != nil {
				return err
			}
			defer b.Close()
			opts := stepexec.PushOptions{RegistryOptions: rf.options(cmd.Flags()), Compression: compression, ForceCompression: force}
			if !quiet {
				opts.Report = os.Stderr
			}
			p, err := b.Push(ctx, args[0], dest, opts)
			if err != nil {
				return err
			}
			if digestFile != "" {
				if err := os.WriteFile(digestFile, []byte(p.Digest.String()), 0o644); err != nil {
					return fmt.Errorf("--digestfile: %w", err)
				}
			}
			fmt.Println(p.Digest)
			return nil
		},
	}
	rf.add(cmd.Flags())
	f := cmd.Flags()
	f.BoolVarP(&quiet, "quiet", "q", false, "print only the digest")
	f.StringVar(&compression, "compression-format", "gzip", "layer compression: gzip or zstd")
	f.BoolVar(&force, "force-compression", false, "recompress layers the registry has in another compression")
	f.StringVar(&digestFile, "digestfile", "", "write the manifest's digest to this file")
	return cmd
}

func loginCommand(ctx context.Context) *cobra.Command {
	var rf registryFlags
	var username, password string
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "login [flags] REGISTRY",
		Short: "Log in to a registry (stores the credentials in the containers auth file)",
		Long: `Check a username and password with REGISTRY and store them in the
containers auth file (--authfile, $REGISTRY_AUTH_FILE, else
$XDG_RUNTIME_DIR/containers/auth.json), which podman reads too. Without
-p or --password-stdin the password is asked for on the terminal.`,
		Example: "  stepexec login -u me registry.example.com\n  echo \"$TOKEN\" | stepexec login -u me --password-stdin 127.0.0.1:5000",
		Args:    exactArgs(1, "login needs a registry, e.g. `stepexec login registry.example.com`"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if password != "" && passwordStdin {
				return usageError{errors.New("give -p or --password-stdin, not both")}
			}
			if password != "" {
				fmt.Fprintln(os.Stderr, "WARNING: a password given with -p shows in the process list and the shell's history: use --password-stdin")
			}
			user, pass, err := credentialsInput(username, password, passwordStdin)
			if err != nil {
				return err
			}
			file, err := stepexec.Login(ctx, args[0], user, pass, rf.options(cmd.Flags()))
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "Login Succeeded (credentials stored in %s)\n", file)
			return nil
		},
	}
	rf.add(cmd.Flags())
	f := cmd.Flags()
	f.StringVarP(&username, "username", "u", "", "the username")
	f.StringVarP(&password, "password", "p", "", "the password (prefer --password-stdin)")
	f.BoolVar(&passwordStdin, "password-stdin", false, "read the password from stdin")
	return cmd
}

// credentialsInput completes the username and password from stdin or
// the terminal. The password is never echoed.
func credentialsInput(user, pass string, fromStdin bool) (string, string, error) {
	if fromStdin {
		if user == "" {
			return "", "", usageError{errors.New("--password-stdin needs -u USERNAME")}
		}
		data, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
		if err != nil {
			return "", "", fmt.Errorf("reading the password from stdin: %w", err)
		}
		return user, strings.TrimRight(string(data), "\r\n"), nil
	}
	tty := term.IsTerminal(int(os.Stdin.Fd()))
	if user == "" {
		if !tty {
			return "", "", usageError{errors.New("give -u USERNAME (no terminal to ask on)")}
		}
		fmt.Fprint(os.Stderr, "Username: ")
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil {
			return "", "", fmt.Errorf("reading the username: %w", err)
		}
		user = strings.TrimSpace(line)
	}
	if pass == "" {
		if !tty {
			return "", "", usageError{errors.New("give --password-stdin (no terminal to ask for the password on)")}
		}
		fmt.Fprint(os.Stderr, "Password: ")
		raw, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return "", "", fmt.Errorf("reading the password: %w", err)
		}
		pass = string(raw)
	}
	return user, pass, nil
}

func logoutCommand() *cobra.Command {
	var authFile string
	var all bool
	cmd := &cobra.Command{
		Use:   "logout [flags] REGISTRY",
		Short: "Remove the stored credentials for a registry",
		Args: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == all {
				return usageError{errors.New("logout needs a registry, or --all")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			target := ""
			if len(args) == 1 {
				target = args[0]
			}
			file, err := stepexec.Logout(target, stepexec.RegistryOptions{AuthFile: authFile})
			if err != nil {
				return err
			}
			if all {
				fmt.Fprintf(os.Stderr, "Removed every login from %s\n", file)
			} else {
				fmt.Fprintf(os.Stderr, "Removed login credentials for %s from %s\n", target, file)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&authFile, "authfile", "", "the credentials file (default $REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json)")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove every stored login")
	return cmd
}

func rangeArgs(lo, hi int, msg string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usageError{errors.New(msg)}
		}
		return nil
	}
}

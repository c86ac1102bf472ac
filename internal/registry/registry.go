// Package registry moves images between a containers/storage store and
// registries, with go.podman.io/image (what podman and buildah use): the
// same registries.conf (short names, aliases, mirrors, insecure and
// blocked registries), auth files, certs.d directories and policy.json
// as podman, and pulls land in the store with podman's layer IDs.
//
// stepexec's own rules on top of the library's: a registry on a loopback
// address that speaks plain HTTP is reached over HTTP without
// configuration (as docker allows; one that speaks TLS is verified as any
// other); a short name that no alias or search registry resolves means
// docker.io/library/NAME (as docker); credentials from
// $REGISTRY_AUTH_FILE come before the default files; a registry that does
// not answer fails the transfer within Options.AnswerTimeout; errors say
// what to do (log in, mark a registry insecure).
package registry

import (
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"time"

	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// Options are the settings every transfer takes (the flags pull, push,
// build and login share).
type Options struct {
	// TLSVerify: nil lets registries.conf decide (and allows plain HTTP
	// to loopback registries); false skips verification and allows plain
	// HTTP everywhere (--tls-verify=false); true requires verified TLS
	// even where registries.conf says insecure.
	TLSVerify *bool
	// CertDir holds ca.crt (and client cert.pem/key.pem) for every
	// registry, instead of the certs.d directories (--cert-dir).
	CertDir string
	// AuthFile is the containers auth file (--authfile); default
	// $REGISTRY_AUTH_FILE, else podman's ($XDG_RUNTIME_DIR/containers/auth.json).
	AuthFile string
	// Report receives podman-style progress lines ("Copying blob …"); nil
	// for none.
	Report io.Writer
	// TempDir holds what a pull spools (default: containers/image's,
	// /var/tmp).
	TempDir string
	// AnswerTimeout bounds how long a registry may take to start sending
	// (connect, authenticate, send the manifest); 0 means
	// DefaultAnswerTimeout, or $STEPEXEC_REGISTRY_TIMEOUT when set.
	AnswerTimeout time.Duration
}

// DefaultAnswerTimeout is how long a registry may stay silent before a
// transfer fails as unreachable.
const DefaultAnswerTimeout = 60 * time.Second

// Client pulls and pushes with one set of Options.
type Client struct {
	opts Options
}

// New returns a client for opts.
func New(opts Options) *Client {
	if opts.AnswerTimeout <= 0 {
		opts.AnswerTimeout = DefaultAnswerTimeout
		if d, err := time.ParseDuration(os.Getenv("STEPEXEC_REGISTRY_TIMEOUT")); err == nil && d > 0 {
			opts.AnswerTimeout = d
		}
	}
	return &Client{opts: opts}
}

// systemContext is the containers/image settings for a transfer.
func (c *Client) systemContext() *types.SystemContext {
	sys := &types.SystemContext{
		OSChoice:                "linux",
		ArchitectureChoice:      goruntime.GOARCH,
		DockerCertPath:          c.opts.CertDir,
		BigFilesTemporaryDir:    c.opts.TempDir,
		DockerRegistryUserAgent: "stepexec",
	}
	if c.opts.TLSVerify != nil {
		sys.DockerInsecureSkipTLSVerify = types.NewOptionalBool(!*c.opts.TLSVerify)
	}
	return sys
}

// policyContext is policy.json's verdict on images (podman's file; when
// there is none, every image is accepted, as docker does).
func (c *Client) policyContext(sys *types.SystemContext) (*signature.PolicyContext, error) {
	policy, err := signature.DefaultPolicy(sys)
	if errors.Is(err, os.ErrNotExist) {
		policy = &signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}}
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the image trust policy (policy.json): %w", err)
	}
	pc, err := signature.NewPolicyContext(policy)
	if err != nil {
		return nil, fmt.Errorf("image trust policy: %w", err)
	}
	return pc, nil
}

// errSilent is the cause of a transfer cancelled for want of an answer.
var errSilent = errors.New("no answer")

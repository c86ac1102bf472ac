package stepexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/internal/registry"
	"github.com/stepexec/stepexec/snapshot"
)

// PullPolicy says when a build pulls the images it names (docker build
// --pull, podman's --pull=missing|always|never).
type PullPolicy int

const (
	// PullMissing pulls an image only when the store has none by that name.
	PullMissing PullPolicy = iota
	// PullAlways asks the registry every time (a re-pull that finds the
	// same image keeps the build cache's hits: the image ID is the same).
	PullAlways
	// PullNever uses only what the store has.
	PullNever
)

// ParsePullPolicy reads --pull's value ("" and "true" are always, as
// docker's bare --pull; "false" is missing).
func ParsePullPolicy(s string) (PullPolicy, error) {
	switch s {
	case "missing", "false":
		return PullMissing, nil
	case "always", "true", "":
		return PullAlways, nil
	case "never":
		return PullNever, nil
	}
	return 0, fmt.Errorf("--pull=%s: want missing, always or never", s)
}

// RegistryOptions are the settings for talking to registries.
type RegistryOptions struct {
	// TLSVerify: nil lets registries.conf decide (loopback registries may
	// be plain HTTP); false skips verification and allows plain HTTP;
	// true requires verified TLS even where registries.conf says insecure.
	TLSVerify *bool
	// CertDir holds CA (and client) certificates for every registry,
	// instead of the certs.d directories.
	CertDir string
	// AuthFile is the containers auth file; default $REGISTRY_AUTH_FILE,
	// else $XDG_RUNTIME_DIR/containers/auth.json.
	AuthFile string
	// Report receives podman-style transfer lines; nil discards them.
	Report io.Writer
}

// client returns a registry client whose spooled files go to the
// builder's scratch directory (removed with it, even after a kill).
func (b *Builder) client(opts RegistryOptions) (*registry.Client, error) {
	tmp, err := b.store.ScratchDir()
	if err != nil {
		return nil, err
	}
	return registry.New(registry.Options{TLSVerify: opts.TLSVerify, CertDir: opts.CertDir,
		AuthFile: opts.AuthFile, Report: opts.Report, TempDir: tmp}), nil
}

// Pull copies ref from its registry into the store (short names resolve
// as podman's do) and returns the stored image. A failed pull leaves none
// of its layers behind.
func (b *Builder) Pull(ctx context.Context, ref string, opts RegistryOptions) (image.Image, error) {
	lease, err := b.store.NewLease()
	if err != nil {
		return image.Image{}, err
	}
	img, _, err := b.pull(ctx, ref, lease, opts)
	if _, rerr := lease.Release(); err != nil && rerr != nil {
		err = errors.Join(err, fmt.Errorf("deleting the failed pull's layers: %w", rerr))
	}
	return img, err
}

// pull pulls ref, its layers held by lease, and returns the image and
// the name it is stored under.
func (b *Builder) pull(ctx context.Context, ref string, lease *snapshot.Lease, opts RegistryOptions) (image.Image, string, error) {
	c, err := b.client(opts)
	if err != nil {
		return image.Image{}, "", err
	}
	p, err := c.Pull(ctx, b.store.ForTransfer(lease), ref)
	if err != nil {
		return image.Image{}, "", err
	}
	img, err := b.images.Get(p.ID)
	return img, p.Name, err
}

// localImage finds ref in the store under the names image.Store tries and
// those registries.conf gives a short name (its alias, its search
// registries), as podman looks images up.
func localImage(s *image.Store, ref string) (image.Image, string, error) {
	img, name, err := s.Resolve(ref)
	if !errors.Is(err, image.ErrNotFound) {
		return img, name, err
	}
	for _, n := range registry.LocalNames(ref) {
		if img, name, lerr := s.Resolve(n); lerr == nil {
			return img, name, nil
		}
	}
	return img, name, err
}

// basePuller pulls the images a build's FROM, COPY --from and RUN
// --mount from= name, as its pull policy says.
type basePuller struct {
	b        *Builder
	policy   PullPolicy
	opts     RegistryOptions
	progress Progress
}

// checksStore tells whether the store is looked at before pulling ref:
// not under PullAlways, unless ref names a stored digest (content
// addressed: there is nothing newer to pull).
func (p basePuller) checksStore(ref string) bool {
	return p.policy != PullAlways || isStoredDigest(p.b.images, ref)
}

// wants tells whether ref is pulled after the store gave localErr.
func (p basePuller) wants(ref string, localErr error) bool {
	return p.policy != PullNever && errors.Is(localErr, image.ErrNotFound) && !isImageRef(ref)
}

// pull pulls ref, its layers held by lease, reporting it to the build's
// progress.
func (p basePuller) pull(ctx context.Context, ref string, lease *snapshot.Lease) (image.Image, string, error) {
	start := time.Now()
	p.progress.Event(Event{Kind: ImagePulling, Name: ref})
	img, name, err := p.b.pull(ctx, ref, lease, p.opts)
	if err != nil {
		return image.Image{}, "", fmt.Errorf("pulling %s: %w", ref, err)
	}
	p.progress.Event(Event{Kind: ImagePulled, Name: name, Digest: "sha256:" + img.ID, Duration: time.Since(start)})
	return img, name, nil
}

// isStoredDigest reports whether ref is name@digest and the store has
// that image: content-addressed, there is nothing newer to pull.
func isStoredDigest(s *image.Store, ref string) bool {
	if !image.HasDigest(ref) {
		return false
	}
	_, _, err := localImage(s, ref)
	return err == nil
}

// isImageRef reports whether ref is an image ID or ID prefix (as FROM
// and COPY --from take them), which only the store can resolve.
func isImageRef(ref string) bool {
	if len(ref) > 7 && ref[:7] == "sha256:" {
		return true
	}
	_, err := image.Candidates(ref)
	return err != nil
}

// Login checks username and password with registry and stores them in
// the containers auth file (opts.AuthFile, $REGISTRY_AUTH_FILE, else
// $XDG_RUNTIME_DIR/containers/auth.json), whose path it returns. It needs
// no store.
func Login(ctx context.Context, registryHost, username, password string, opts RegistryOptions) (string, error) {
	c := registry.New(registry.Options{TLSVerify: opts.TLSVerify, CertDir: opts.CertDir, AuthFile: opts.AuthFile})
	return c.Login(ctx, registryHost, username, password)
}

// Logout removes the stored credentials for registryHost ("" for all)
// from the containers auth file, whose path it returns.
func Logout(registryHost string, opts RegistryOptions) (string, error) {
	return registry.New(registry.Options{AuthFile: opts.AuthFile}).Logout(registryHost)
}

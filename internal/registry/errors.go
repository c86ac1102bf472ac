package registry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/docker/distribution/registry/api/errcode"
	v2 "github.com/docker/distribution/registry/api/v2"
	"go.podman.io/image/v5/docker"
)

// Error kinds a transfer fails with; the errors explain wraps one of them.
var (
	// ErrNotFound: the registry has no such repository, tag or digest.
	ErrNotFound = errors.New("not found in the registry")
	// ErrUnauthorized: the registry wants (other) credentials.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnreachable: no connection, or no answer in time.
	ErrUnreachable = errors.New("registry unreachable")
	// ErrTLS: the registry's certificate could not be verified, or it
	// does not speak TLS.
	ErrTLS = errors.New("TLS failure")
)

// explain turns a containers/image error about a transfer of what (an
// image reference, or a registry host) into one that says what happened
// and what to do, keeping the library's own text at the end.
func explain(err error, what string, timeout time.Duration) error {
	host := what
	if h, _, ok := strings.Cut(what, "/"); ok {
		host = h
	}
	switch {
	case errors.Is(err, errSilent):
		return fmt.Errorf("%s: %w: %s did not answer within %s", what, ErrUnreachable, host, timeout)
	case isUnauthorized(err):
		return fmt.Errorf("%s: %w: log in with `stepexec login %s` (or check the credentials stored for it): %v", what, ErrUnauthorized, host, err)
	case isDenied(err):
		return fmt.Errorf("%s: access denied: the repository does not exist, or it needs `stepexec login %s`: %w", what, host, errors.Join(ErrUnauthorized, err))
	case isNotFound(err):
		return fmt.Errorf("%s: %w: %v", what, ErrNotFound, err)
	case isTLS(err):
		return fmt.Errorf("%s: %w talking to %s: %v\n"+
			"  to trust its certificate, put its CA in /etc/containers/certs.d/%s/ca.crt (or ~/.config/containers/certs.d/%s/ca.crt, or a directory given with --cert-dir);\n"+
			"  to allow it without verification (or over plain HTTP), mark it insecure in registries.conf:\n"+
			"    [[registry]]\n    location = %q\n    insecure = true\n"+
			"  or pass --tls-verify=false", what, ErrTLS, host, err, host, host, host)
	case isUnreachable(err):
		return fmt.Errorf("%s: %w: cannot connect to %s: %v", what, ErrUnreachable, host, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func isUnauthorized(err error) bool {
	var unauth docker.ErrUnauthorizedForCredentials
	if errors.As(err, &unauth) {
		return true
	}
	var ec errcode.ErrorCoder
	if errors.As(err, &ec) && ec.ErrorCode() == errcode.ErrorCodeUnauthorized {
		return true
	}
	var status docker.UnexpectedHTTPStatusError
	return errors.As(err, &status) && status.StatusCode == http.StatusUnauthorized
}

func isDenied(err error) bool {
	var ec errcode.ErrorCoder
	return errors.As(err, &ec) && ec.ErrorCode() == errcode.ErrorCodeDenied
}

func isNotFound(err error) bool {
	var ec errcode.ErrorCoder
	if errors.As(err, &ec) {
		switch ec.ErrorCode() {
		case v2.ErrorCodeManifestUnknown, v2.ErrorCodeNameUnknown, v2.ErrorCodeBlobUnknown:
			return true
		}
	}
	var status docker.UnexpectedHTTPStatusError
	if errors.As(err, &status) && status.StatusCode == http.StatusNotFound {
		return true
	}
	return strings.Contains(err.Error(), "manifest unknown")
}

func isTLS(err error) bool {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var record tls.RecordHeaderError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &record) || errors.As(err, &verify) ||
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

func isUnreachable(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	var ne net.Error
	return errors.As(err, &op) || errors.As(err, &dns) || errors.Is(err, syscall.ECONNREFUSED) ||
		(errors.As(err, &ne) && ne.Timeout())
}

package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"time"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
)

// probeTimeout bounds the TLS probe of a loopback registry.
const probeTimeout = 3 * time.Second

// allowLoopbackHTTP sets sys to allow plain HTTP when every endpoint a
// transfer of named may use (registries.conf's location and mirrors; for
// a push only the registry itself) is on a loopback address and speaks
// plain HTTP: docker treats 127.0.0.0/8 as an insecure registry by
// default. A loopback registry that speaks TLS keeps its verification,
// and an explicit --tls-verify is never overridden.
func allowLoopbackHTTP(ctx context.Context, sys *types.SystemContext, named reference.Named, push bool) {
	if sys.DockerInsecureSkipTLSVerify != types.OptionalBoolUndefined {
		return
	}
	hosts := []string{reference.Domain(named)}
	if !push {
		hosts = pullHosts(sys, named)
	}
	for _, h := range hosts {
		if !isLoopback(h) || speaksTLS(ctx, h) {
			return
		}
	}
	sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
}

// pullHosts lists the registries a pull of named may contact.
func pullHosts(sys *types.SystemContext, named reference.Named) []string {
	reg, err := sysregistriesv2.FindRegistry(sys, named.Name())
	if err != nil || reg == nil {
		return []string{reference.Domain(named)}
	}
	sources, err := reg.PullSourcesFromReference(named)
	if err != nil {
		return []string{reference.Domain(named)}
	}
	hosts := make([]string, 0, len(sources))
	for _, s := range sources {
		hosts = append(hosts, reference.Domain(s.Reference))
	}
	return hosts
}

// isLoopback reports whether a registry host[:port] is a loopback IP
// literal or "localhost".
func isLoopback(hostPort string) bool {
	host := hostPort
	if h, _, err := net.SplitHostPort(hostPort); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// speaksTLS tells whether the server at hostPort answers a TLS handshake
// (whatever its certificate). Nothing listening counts as no (the
// transfer then fails as unreachable, over either); a server that does not
// answer in time counts as yes, so that it is never taken for plain HTTP.
func speaksTLS(ctx context.Context, hostPort string) bool {
	if _, _, err := net.SplitHostPort(hostPort); err != nil {
		hostPort = net.JoinHostPort(strings.Trim(hostPort, "[]"), "443")
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", hostPort)
	if err != nil {
		return false
	}
	defer conn.Close()
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true}) // a probe: nothing is sent
	err = tc.HandshakeContext(ctx)
	var rec tls.RecordHeaderError
	return !errors.As(err, &rec)
}

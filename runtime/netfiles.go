package runtime

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// hostResolvConf is the host's resolver configuration every step's
// /etc/resolv.conf starts from.
var hostResolvConf = "/etc/resolv.conf"

// netFileMounts writes the step's /etc/hosts, /etc/hostname and
// /etc/resolv.conf into its files dir and binds them over the rootfs's,
// as BuildKit binds hosts and resolv.conf: what the step writes to them
// goes to these copies, and a missing target is a stub removed after the
// step (stubs.go), so none of them changes the layer. A target the image
// has as something other than a regular file (a directory) is left alone.
func (s *step) netFileMounts() ([]*configs.Mount, error) {
	if err := os.MkdirAll(s.files, 0o755); err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	resolv, err := s.resolvConf()
	if err != nil {
		return nil, err
	}
	files := []struct {
		dest    string
		content []byte
	}{
		{"/etc/hosts", []byte(s.hostsFile())},
		{"/etc/hostname", []byte(s.spec.Hostname + "\n")},
		{"/etc/resolv.conf", resolv},
	}
	var mounts []*configs.Mount
	for _, f := range files {
		if !s.bindableFile(f.dest) {
			continue
		}
		src := filepath.Join(s.files, filepath.Base(f.dest))
		if err := s.writeStepFile(src, f.content); err != nil {
			return nil, err
		}
		s.recordMissing(f.dest)
		mounts = append(mounts, &configs.Mount{
			Source: src, Destination: f.dest, Device: "bind",
			Flags:            unix.MS_BIND | unix.MS_REC,
			PropagationFlags: []int{unix.MS_PRIVATE},
		})
	}
	return mounts, nil
}

// writeStepFile writes a file the step's root owns, as BuildKit chowns its
// hosts and resolv.conf to the root of the step's id map: the step may
// write it, as it could the image's own.
func (s *step) writeStepFile(path string, content []byte) error {
	if err := os.WriteFile(path, content, 0o644); err != nil {
		return fmt.Errorf("runtime: %w", err)
	}
	if s.r.shift == nil {
		return nil
	}
	uid, gid := s.r.shift.Root()
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("runtime: %w", err)
	}
	return nil
}

// bindableFile reports whether dest, resolved in the rootfs as libcontainer
// resolves mount targets, is a regular file or missing.
func (s *step) bindableFile(dest string) bool {
	p, err := securejoin.SecureJoin(s.rootfs, dest)
	if err != nil {
		return false
	}
	fi, err := os.Lstat(p)
	return err != nil || fi.Mode().IsRegular()
}

// hostsFile is BuildKit's /etc/hosts with the step's hostname, plus the
// host's loopback under podman's and docker's names for a private step.
func (s *step) hostsFile() string {
	hosts := "127.0.0.1\tlocalhost " + s.spec.Hostname + "\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if s.network() == NetworkPrivate {
		if d, err := s.r.natDriver(); err == nil {
			hosts += d.hostLoopback() + "\t" + HostGatewayName + " host.docker.internal\n"
		}
	}
	return hosts
}

// resolvConf is the host's resolv.conf for the step. A private step cannot
// reach the host's local resolvers (127.0.0.53 and the like): as buildah
// does, they are replaced by the NAT helper's DNS forwarder, which sends
// the queries on to the host's resolver.
func (s *step) resolvConf() ([]byte, error) {
	host, err := os.ReadFile(hostResolvConf)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("runtime: reading the host's resolver configuration: %w", err)
	}
	if s.network() != NetworkPrivate {
		return host, nil
	}
	d, err := s.r.natDriver()
	if err != nil {
		return host, nil
	}
	return withoutLocalResolvers(host, d.dnsForwarder()), nil
}

// withoutLocalResolvers drops the loopback nameservers of a resolv.conf;
// when that leaves none, forwarder takes their place.
func withoutLocalResolvers(conf []byte, forwarder string) []byte {
	var out bytes.Buffer
	remote := 0
	for _, line := range strings.SplitAfter(string(conf), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			addr, err := netip.ParseAddr(strings.Split(f[1], "%")[0])
			if err == nil && addr.IsLoopback() {
				continue
			}
			remote++
		}
		out.WriteString(line)
	}
	if remote > 0 {
		return out.Bytes()
	}
	if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
		out.WriteByte('\n')
	}
	out.WriteString("nameserver " + forwarder + "\n")
	return out.Bytes()
}

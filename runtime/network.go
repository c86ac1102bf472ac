package runtime

import (
	"context"
	"fmt"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// Network is how a step reaches the network.
type Network string

const (
	// NetworkNone: a network namespace of the step's own with only "lo".
	// The zero Network means the same.
	NetworkNone Network = "none"
	// NetworkHost: the step shares the network namespace the builder was
	// started in (rootless, the outer namespace does not make one).
	NetworkHost Network = "host"
	// NetworkPrivate: a namespace of the step's own, connected to the
	// host's through a user-mode NAT (pasta or slirp4netns, see nat.go)
	// started for the step and stopped with it. The host's loopback is
	// reachable as HostGatewayName, nothing else of it.
	NetworkPrivate Network = "private"
)

// HostGatewayName is the name a private step reaches the host's loopback
// by, in its /etc/hosts (podman's name; docker's is added beside it).
const HostGatewayName = "host.containers.internal"

// ParseNetwork reads a network mode as --network spells it.
func ParseNetwork(s string) (Network, error) {
	switch n := Network(s); n {
	case NetworkNone, NetworkHost, NetworkPrivate:
		return n, nil
	}
	return "", fmt.Errorf("unknown network mode %q: want none, host or private", s)
}

// DefaultNetwork is what a step gets when the Dockerfile and the build ask
// for no mode: private when a NAT helper works here, else host, with a
// warning saying how to get isolation.
func (r *Runtime) DefaultNetwork() (Network, string) {
	if _, err := r.natDriver(); err != nil {
		return NetworkHost, fmt.Sprintf("RUN steps share the host's network, without isolation: %v", err)
	}
	return NetworkPrivate, ""
}

// CheckNetwork tells whether steps can get network mode n here, and why
// not, before any step runs.
func (r *Runtime) CheckNetwork(n Network) error {
	if n != NetworkPrivate {
		return nil
	}
	if _, err := r.natDriver(); err != nil {
		return fmt.Errorf("--network=private: %w", err)
	}
	return nil
}

// netNamespaces sets the step's network namespace in cfg: its own with
// "lo" up, or none (the builder's) for host networking. sysfs can only be
// mounted by the owner of the network namespace, so a host-network step
// gets the host's /sys bound read-only instead, as runc's rootless spec
// does, recursively read-only.
func (s *step) netNamespaces(cfg *configs.Config) {
	if s.network() != NetworkHost {
		cfg.Namespaces = append(cfg.Namespaces, configs.Namespace{Type: configs.NEWNET})
		cfg.Networks = []*configs.Network{{Type: "loopback"}}
		return
	}
	for i, m := range cfg.Mounts {
		if m.Device == "sysfs" {
			cfg.Mounts[i] = &configs.Mount{
				Source: "/sys", Destination: "/sys", Device: "bind",
				Flags:            unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV,
				PropagationFlags: rprivate,
				RecAttr:          &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC | unix.MOUNT_ATTR_NODEV},
			}
		}
	}
}

// network is the step's mode, NetworkNone when the spec names none.
func (s *step) network() Network {
	if s.spec.Network == "" {
		return NetworkNone
	}
	return s.spec.Network
}

// connectNetwork starts the NAT helper for a private step, once its pid 1
// (pid) is in its namespaces and before the command runs.
func (s *step) connectNetwork(ctx context.Context, pid int) error {
	if s.network() != NetworkPrivate {
		return nil
	}
	d, err := s.r.natDriver()
	if err != nil {
		return fmt.Errorf("runtime: network for step %s: %w", s.spec.ID, err)
	}
	sess, err := d.connect(ctx, pid, s.files)
	if err != nil {
		return fmt.Errorf("runtime: network for step %s: %w", s.spec.ID, err)
	}
	s.nat = sess
	return nil
}

// disconnectNetwork kills the step's NAT helper, if any, and leaves its
// reaping to the Runtime (see natSession.wait).
func (s *step) disconnectNetwork() {
	if s.nat == nil {
		return
	}
	sess := s.nat
	s.nat = nil
	sess.kill()
	s.r.reaping.Add(1)
	go func() {
		defer s.r.reaping.Done()
		_ = sess.wait()
	}()
}

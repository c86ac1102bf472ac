package engine

import (
	"fmt"
	"path"
	"strings"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/sys/signal"

	"github.com/stepexec/stepexec/dockerfile"
)

// applyConfig is an instruction's effect on the image config and the
// stage's variables, as BuildKit's dispatch functions have it (history
// text included). RUN, COPY and ADD change no config: their ops add their
// own history with their layer. WORKDIR's directory is made by its op.
func applyConfig(req Request, st State, step dockerfile.Step, cmd dockerfile.Command) (State, error) {
	switch c := cmd.(type) {
	case *dockerfile.Run, *dockerfile.Copy:
		return st, nil
	case *dockerfile.Env:
		var b strings.Builder
		b.WriteString("ENV")
		for _, kv := range c.Pairs {
			st = st.withEnv(kv.Key, kv.Value)
			fmt.Fprintf(&b, " %s=%s", kv.Key, kv.Value)
		}
		return st.withHistory(b.String(), true), nil
	case *dockerfile.Arg:
		return applyArg(req, st, c)
	case *dockerfile.Label:
		var b strings.Builder
		b.WriteString("LABEL")
		for _, kv := range c.Pairs {
			st.labels = st.labels.With(kv.Key, kv.Value)
			fmt.Fprintf(&b, " %s=%s", kv.Key, kv.Value)
		}
		return st.withHistory(b.String(), true), nil
	case *dockerfile.Maintainer:
		st.cfg.Author = c.Name
		return st.withHistory("MAINTAINER "+c.Name, true), nil
	case *dockerfile.Expose:
		ports, err := parsePorts(c.Ports)
		if err != nil {
			return st, err
		}
		st = st.withConfig(func(cfg *dockerspec.DockerOCIImageConfig) {
			if cfg.ExposedPorts == nil {
				cfg.ExposedPorts = map[string]struct{}{}
			}
			for _, p := range ports {
				cfg.ExposedPorts[p] = struct{}{}
			}
		})
		return st.withHistory(fmt.Sprintf("EXPOSE %v", ports), true), nil
	case *dockerfile.Volume:
		st = st.withConfig(func(cfg *dockerspec.DockerOCIImageConfig) {
			if cfg.Volumes == nil {
				cfg.Volumes = map[string]struct{}{}
			}
			for _, v := range c.Paths {
				cfg.Volumes[v] = struct{}{}
			}
		})
		return st.withHistory(fmt.Sprintf("VOLUME %v", c.Paths), true), nil
	case *dockerfile.StopSignal:
		if _, err := signal.ParseSignal(c.Signal); err != nil {
			return st, err
		}
		st = st.withConfig(func(cfg *dockerspec.DockerOCIImageConfig) { cfg.StopSignal = c.Signal })
		return st.withHistory("STOPSIGNAL "+c.Signal, true), nil
	case *dockerfile.Healthcheck:
		h := dockerspec.HealthcheckConfig{Test: c.Test, Interval: c.Interval, Timeout: c.Timeout,
			StartPeriod: c.StartPeriod, StartInterval: c.StartInterval, Retries: c.Retries}
		st = st.withConfig(func(cfg *dockerspec.DockerOCIImageConfig) { cfg.Healthcheck = &h })
		return st.withHistory(fmt.Sprintf("HEALTHCHECK %+v", h), true), nil
	case *dockerfile.Shell:
		st = st.withConfig(func(cfg *dockerspec.DockerOCIImageConfig) { cfg.Shell = c.Args })
		return st.withHistory(fmt.Sprintf("SHELL %v", c.Args), true), nil
	case *dockerfile.User:
		st = st.withConfig(func(cfg *dockerspec.DockerOCIImageConfig) { cfg.User = c.Spec })
		return st.withHistory("USER "+c.Spec, true), nil
	case *dockerfile.Workdir:
		st = st.withConfig(func(cfg *dockerspec.DockerOCIImageConfig) { cfg.WorkingDir = resolveWorkdir(cfg.WorkingDir, c.Path) })
		return st, nil
	case *dockerfile.Cmd:
		args := commandArgs(st, c.Shell, c.Args)
		st = st.withConfig(func(cfg *dockerspec.DockerOCIImageConfig) {
			cfg.Cmd = args
			cfg.ArgsEscaped = true //nolint:staticcheck // docker's field, set as BuildKit does
		})
		st.cmdSet = true
		return st.withHistory(fmt.Sprintf("CMD %q", args), true), nil
	case *dockerfile.Entrypoint:
		args := commandArgs(st, c.Shell, c.Args)
		st = st.withConfig(func(cfg *dockerspec.DockerOCIImageConfig) {
			cfg.Entrypoint = args
			if !st.cmdSet {
				cfg.Cmd = nil // docker: an ENTRYPOINT drops a CMD inherited from the base
			}
		})
		return st.withHistory(fmt.Sprintf("ENTRYPOINT %q", args), true), nil
	case *dockerfile.Onbuild:
		// Recorded for builds FROM this image; BuildKit adds no history.
		st = st.withConfig(func(cfg *dockerspec.DockerOCIImageConfig) { cfg.OnBuild = append(cfg.OnBuild, c.Expression) })
		return st, nil
	}
	return st, fmt.Errorf("unexpected instruction %T", cmd)
}

// commandArgs is a CMD or ENTRYPOINT's argv: shell form runs through the
// stage's shell.
func commandArgs(st State, shell bool, args []string) []string {
	if !shell {
		return append([]string(nil), args...)
	}
	if len(args) == 0 {
		return nil
	}
	return append(st.shell(), strings.Join(args, " "))
}

// resolveWorkdir is BuildKit's NormalizeWorkdir: a relative path is
// relative to the current one; the result is clean and absolute.
func resolveWorkdir(current, p string) string {
	if current == "" {
		current = "/"
	}
	if p == "" {
		return path.Clean(current)
	}
	if !path.IsAbs(p) {
		p = path.Join(current, p)
	}
	return path.Clean(p)
}

// applyArg is BuildKit's dispatchArg: a --build-arg value wins, else the
// default (expanded with the variables so far), else, for an ARG without
// a default, the global scope's value; an ARG that gets no value is not
// set at all.
func applyArg(req Request, st State, c *dockerfile.Arg) (State, error) {
	g := req.Graph
	var parts []string
	for _, a := range c.Args {
		val, has := g.BuildArgs[a.Key]
		switch {
		case has:
		case a.Default != nil:
			v, err := g.Expander().Word(*a.Default, st.RunEnv())
			if err != nil {
				return st, fmt.Errorf("ARG %s: %w", a.Key, err)
			}
			val, has = v, true
		default:
			val, has = g.MetaArgs.Get(a.Key)
		}
		st = st.withArg(a.Key, val, has)
		if has {
			parts = append(parts, a.Key+"="+val)
		} else {
			parts = append(parts, a.Key)
		}
	}
	return st.withHistory("ARG "+strings.Join(parts, " "), true), nil
}

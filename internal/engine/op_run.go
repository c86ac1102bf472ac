package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/stepexec/stepexec/dockerfile"
	"github.com/stepexec/stepexec/runtime"
	"github.com/stepexec/stepexec/snapshot"
)

// run is RUN: the command in a sandbox on a snapshot of st, its changes
// committed as a layer (none when it changed nothing).
func (r *stepRun) run(ctx context.Context, st State, c *dockerfile.Run) (_ State, err error) {
	ms, err := runMounts(r.b.req, r.p, st, c)
	if err != nil {
		return st, err
	}
	args := c.Args
	if c.Shell {
		args = append(st.shell(), c.Script)
	}
	runArgs := args
	if c.File != nil {
		runArgs = []string{"/dev/pipes/" + c.File.Name}
	}
	createdBy := "RUN " + runCommandString(runArgs, st)
	key, err := r.runKey(ctx, st, c, runArgs, ms)
	if err != nil {
		return st, err
	}
	hit, ok, release, err := r.cached(ctx, st, key, createdBy)
	if err != nil || ok {
		return hit, err
	}
	defer func() { r.afterCommit(release) }()
	set, err := r.prepareMounts(ctx, st, ms)
	if err != nil {
		return st, err
	}
	defer func() {
		if rerr := set.release(); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if c.File != nil {
		script, err := r.scriptFile(c.File)
		if err != nil {
			return st, err
		}
		defer os.Remove(script)
		set.mounts = append(set.mounts, runtime.Mount{Target: runArgs[0], Source: runtime.Bind{Path: script}, ReadOnly: true})
		args = runArgs
	}
	env := runEnv(st, r.b.req.Graph.ProxyEnv(), set.env)
	var res runtime.Result
	st, commit, err := r.inSnapshot(ctx, st, key, forStep, func(snap *snapshot.Snapshot) error {
		u, err := lookupUser(ctx, snap.Dir, st.Config().User)
		if err != nil {
			return err
		}
		out := r.b.req.Progress.Output(r.vertex)
		setupStart := time.Now()
		res, err = r.b.deps.Runner.Run(ctx, runtime.Spec{
			ID: r.key(""), Rootfs: snap.Dir, Args: args, Env: env, Cwd: st.workdir(), User: u,
			Hostname: r.b.req.BuildID[:12], Stdout: out, Stderr: out, Mounts: set.mounts, Limits: r.b.req.Limits,
			Network: r.stepNetwork(c),
			OnStart: func() { r.event(Event{Kind: SandboxCreated, Duration: time.Since(setupStart)}) },
		})
		if f, ok := out.(interface{ Flush() }); ok {
			f.Flush()
		}
		if err != nil {
			return err
		}
		r.event(Event{Kind: CommandExited, ExitCode: res.ExitCode, Duration: res.Run})
		if res.ExitCode != 0 {
			return &StepError{Location: r.step.Location, Text: r.step.Text, ExitCode: res.ExitCode}
		}
		return nil
	})
	if err != nil {
		var se *StepError
		if errors.As(err, &se) && r.step.OnBuild {
			se.Text = "ONBUILD " + se.Text
		}
		return st, err
	}
	r.event(Event{Kind: SandboxRemoved, Duration: res.Teardown})
	return st.withHistory(createdBy, commit.Empty), nil
}

// networkMode is the network mode a RUN asks for, its own --network or the
// build's; "" when neither names one (a RUN's key then says "default", as
// BuildKit's does, whatever mode this host gives such steps).
func (r *stepRun) networkMode(c *dockerfile.Run) string {
	for _, m := range []string{c.Network, r.b.req.Network} {
		if m != "" && m != "default" {
			return m
		}
	}
	return ""
}

// stepNetwork is the mode the RUN's step gets: the one asked for, else the
// host's default, whose warning (if any) is said once per build.
func (r *stepRun) stepNetwork(c *dockerfile.Run) runtime.Network {
	if m := r.networkMode(c); m != "" {
		return runtime.Network(m)
	}
	if w := r.b.req.DefaultNetworkWarning; w != "" {
		r.b.warned.Do(func() { r.b.req.Progress.Event(Event{Kind: Warning, Text: w}) })
	}
	return r.b.req.DefaultNetwork
}

// runEnv is a RUN's environment: the stage's variables, then the proxy
// build arguments no ARG declared, then secrets given as variables.
func runEnv(st State, proxy, secrets []string) []string {
	env := st.RunEnv().Environ()
	for _, kv := range proxy {
		k, _, _ := strings.Cut(kv, "=")
		if _, declared := st.RunEnv().Get(k); !declared {
			env = append(env, kv)
		}
	}
	return append(env, secrets...)
}

// runCommandString is the history text of a RUN, as BuildKit writes it:
// the stage's build arguments as "|N K=V …" before the command.
func runCommandString(args []string, st State) string {
	var parts []string
	seen := map[string]int{}
	for _, a := range st.args {
		v, ok := st.RunEnv().Get(a.key)
		if !ok {
			v = a.value
		}
		if i, ok := seen[a.key]; ok {
			parts[i] = a.key + "=" + v
			continue
		}
		seen[a.key] = len(parts)
		parts = append(parts, a.key+"="+v)
	}
	if len(parts) > 0 {
		parts = append([]string{"|" + strconv.Itoa(len(parts))}, parts...)
	}
	return strings.Join(append(parts, args...), " ")
}

// scriptFile writes a "#!" heredoc as an executable file for the step to
// run (BuildKit mounts it at /dev/pipes/NAME).
func (r *stepRun) scriptFile(f *dockerfile.InlineFile) (string, error) {
	dir := r.b.deps.TempDir
	if dir == "" {
		dir = os.TempDir()
	}
	p := filepath.Join(dir, r.key("script"))
	if err := os.WriteFile(p, []byte(f.Data), 0o755); err != nil {
		return "", fmt.Errorf("writing the heredoc script: %w", err)
	}
	if err := os.Chmod(p, 0o755); err != nil {
		os.Remove(p)
		return "", err
	}
	return p, nil
}

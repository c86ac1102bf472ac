package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/docker/go-units"

	"github.com/stepexec/stepexec"
	"github.com/stepexec/stepexec/dockerfile"
)

// options turns the build flags into build options and a progress mode.
func (bf *buildFlags) options(contextDir string, stdin io.Reader) (stepexec.BuildOptions, string, error) {
	opts := stepexec.BuildOptions{ContextDir: contextDir, Dockerfile: bf.file, Target: bf.target, Tags: bf.tags,
		NoCache: bf.noCache, NoCacheFilter: bf.noCacheFilter, Push: bf.push, Network: bf.network}
	var err error
	if opts.Pull, err = stepexec.ParsePullPolicy(bf.pull); err != nil {
		return opts, "", err
	}
	if opts.Outputs, err = parseOutputs(bf.outputs); err != nil {
		return opts, "", err
	}
	mode := "quiet"
	if !bf.quiet {
		if mode, err = progressMode(bf.progress); err != nil {
			return opts, "", err
		}
	}
	if bf.platform != "" {
		if err := dockerfile.CheckPlatform(bf.platform); err != nil {
			return opts, "", fmt.Errorf("--platform: %w", err)
		}
	}
	if opts.BuildArgs, err = buildArgs(bf.argFiles, bf.buildArgs); err != nil {
		return opts, "", err
	}
	if opts.Secrets, err = parseSecrets(bf.secrets); err != nil {
		return opts, "", err
	}
	if opts.Labels, err = keyValues("--label", bf.labels); err != nil {
		return opts, "", err
	}
	if opts.Memory, opts.PidsLimit, err = bf.limits(); err != nil {
		return opts, "", err
	}
	if bf.file == "-" && contextDir == "-" {
		return opts, "", fmt.Errorf("-f - and a context of - both read stdin: give the context as a directory")
	}
	opts.Stdin = stdin
	return opts, mode, nil
}

// buildArgs reads --build-arg-file files, then --build-arg values (which
// win). "KEY" alone takes KEY's value from the environment, as docker
// does; a KEY not in the environment is left unset.
func buildArgs(files, args []string) (map[string]string, error) {
	out := map[string]string{}
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("--build-arg-file: %w", err)
		}
		sc := bufio.NewScanner(f)
		line := 0
		for sc.Scan() {
			line++
			text := strings.TrimSpace(sc.Text())
			if text == "" || strings.HasPrefix(text, "#") {
				continue
			}
			if err := setArg(out, text); err != nil {
				f.Close()
				return nil, fmt.Errorf("--build-arg-file %s:%d: %w", file, line, err)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("--build-arg-file %s: %w", file, err)
		}
	}
	for _, a := range args {
		if err := setArg(out, a); err != nil {
			return nil, fmt.Errorf("--build-arg %s: %w", a, err)
		}
	}
	return out, nil
}

func setArg(out map[string]string, kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if k == "" {
		return fmt.Errorf("expected KEY=VALUE or KEY")
	}
	if !ok {
		if env, found := os.LookupEnv(k); found {
			out[k] = env
		}
		return nil
	}
	out[k] = v
	return nil
}

func keyValues(flag string, list []string) (map[string]string, error) {
	if len(list) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: expected KEY=VALUE", flag, kv)
		}
		out[k] = v
	}
	return out, nil
}

// parseSecrets reads docker's --secret id=ID[,src=PATH|,env=VAR] (src also
// source; type=file|env). With neither, the value comes from the
// environment variable named like the id, as buildx does.
func parseSecrets(specs []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, spec := range specs {
		kv := map[string]string{}
		for _, field := range strings.Split(spec, ",") {
			k, v, ok := strings.Cut(field, "=")
			if !ok {
				return nil, fmt.Errorf("--secret %q: %q is not KEY=VALUE (want id=ID,src=PATH or id=ID,env=VAR)", spec, field)
			}
			kv[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
		id := kv["id"]
		if id == "" {
			return nil, fmt.Errorf("--secret %q: id= is required", spec)
		}
		src := kv["src"]
		if src == "" {
			src = kv["source"]
		}
		env := kv["env"]
		if src == "" && env == "" {
			if kv["type"] == "file" {
				src = id
			} else {
				env = id
			}
		}
		if src != "" {
			data, err := os.ReadFile(src)
			if err != nil {
				return nil, fmt.Errorf("--secret id=%s: %w", id, err)
			}
			out[id] = data
			continue
		}
		v, ok := os.LookupEnv(env)
		if !ok {
			return nil, fmt.Errorf("--secret id=%s: environment variable %s is not set", id, env)
		}
		out[id] = []byte(v)
	}
	return out, nil
}

// limits reads --memory (docker's sizes: 512m, 2g; a bare number is
// bytes) and --pids-limit (-1, as podman's, means none).
func (bf *buildFlags) limits() (memory, pids int64, err error) {
	if bf.memory != "" {
		if memory, err = units.RAMInBytes(bf.memory); err != nil {
			return 0, 0, fmt.Errorf("--memory %q: %w", bf.memory, err)
		}
		if memory <= 0 {
			return 0, 0, fmt.Errorf("--memory %q: want a positive size, e.g. 512m", bf.memory)
		}
	}
	switch {
	case bf.pidsLimit == -1:
		return memory, 0, nil
	case bf.pidsLimit < -1:
		return 0, 0, fmt.Errorf("--pids-limit %d: want a number of processes (-1 or 0: no limit)", bf.pidsLimit)
	}
	return memory, bf.pidsLimit, nil
}

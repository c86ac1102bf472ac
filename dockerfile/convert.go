package dockerfile

import (
	"fmt"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// convert maps BuildKit's parse of one instruction of stage s to a Step.
// The error is the instruction's own (reported wherever the stage is);
// problems that matter only if s is built go to problems.
func (g *Graph) convert(pn parsedNode, s *Stage, problems *errList) (Step, error) {
	step := Step{Location: pn.loc, Text: strings.TrimSpace(pn.node.Original)}
	var err error
	switch c := pn.v.(type) {
	case *instructions.RunCommand:
		step.Command, err = g.convertRun(c, pn, s, problems)
	case *instructions.CopyCommand:
		step.Command, err = g.convertCopy(copyFields{SourcesAndDest: c.SourcesAndDest, from: c.From, chown: c.Chown, chmod: c.Chmod,
			link: c.Link, parents: c.Parents, excludes: c.ExcludePatterns}, pn, s, problems)
	case *instructions.AddCommand:
		step.Command, err = g.convertCopy(copyFields{SourcesAndDest: c.SourcesAndDest, add: true, chown: c.Chown, chmod: c.Chmod,
			link: c.Link, excludes: c.ExcludePatterns, checksum: c.Checksum, unpack: c.Unpack, keepGit: c.KeepGitDir}, pn, s, problems)
	default:
		step.Command, err = convertConfig(pn.v)
	}
	return step, err
}

// convertConfig converts the instructions that only change the image
// config (and ARG).
func convertConfig(v any) (Command, error) {
	switch c := v.(type) {
	case *instructions.EnvCommand:
		return &Env{Pairs: pairs(c.Env)}, nil
	case *instructions.LabelCommand:
		return &Label{Pairs: pairs(c.Labels)}, nil
	case *instructions.MaintainerCommand:
		return &Maintainer{Name: c.Maintainer}, nil
	case *instructions.ExposeCommand:
		return &Expose{Ports: append([]string(nil), c.Ports...)}, nil
	case *instructions.VolumeCommand:
		return &Volume{Paths: append([]string(nil), c.Volumes...)}, nil
	case *instructions.StopSignalCommand:
		return &StopSignal{Signal: c.Signal}, nil
	case *instructions.HealthCheckCommand:
		h := c.Health
		return &Healthcheck{Test: append([]string(nil), h.Test...), Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, StartInterval: h.StartInterval, Retries: h.Retries}, nil
	case *instructions.ShellCommand:
		return &Shell{Args: append([]string(nil), c.Shell...)}, nil
	case *instructions.UserCommand:
		return &User{Spec: c.User}, nil
	case *instructions.WorkdirCommand:
		return &Workdir{Path: c.Path}, nil
	case *instructions.CmdCommand:
		return &Cmd{Shell: c.PrependShell, Args: append([]string(nil), c.CmdLine...)}, nil
	case *instructions.EntrypointCommand:
		return &Entrypoint{Shell: c.PrependShell, Args: append([]string(nil), c.CmdLine...)}, nil
	case *instructions.OnbuildCommand:
		return &Onbuild{Expression: c.Expression}, nil
	case *instructions.ArgCommand:
		a := &Arg{}
		for _, kv := range c.Args {
			d := ArgDef{Key: kv.Key}
			if kv.Value != nil {
				v := *kv.Value
				d.Default = &v
			}
			a.Args = append(a.Args, d)
		}
		return a, nil
	case *instructions.Stage:
		return nil, fmt.Errorf("FROM inside a stage")
	}
	return nil, fmt.Errorf("unexpected instruction type %T", v)
}

func pairs(kvs instructions.KeyValuePairs) []KeyValue {
	out := make([]KeyValue, len(kvs))
	for i, kv := range kvs {
		out[i] = KeyValue{Key: kv.Key, Value: kv.Value}
	}
	return out
}

package dockerfile

import (
	"fmt"
	"slices"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// Expander expands variables the way BuildKit's Dockerfile frontend does
// ($VAR, ${VAR}, ${VAR:-x}, ${VAR:+x}, ${VAR#pat}, … with the file's escape
// token). It is safe for concurrent use.
type Expander struct {
	escape rune // a Lex is not concurrency-safe: each expansion makes one
}

func (e *Expander) newLex() *shell.Lex { return shell.NewLex(e.escape) }

// Word expands one word with env.
func (e *Expander) Word(word string, env shell.EnvGetter) (string, error) {
	out, _, err := e.newLex().ProcessWord(word, env)
	return out, err
}

// words expands a word and splits it into words, as EXPOSE's arguments are.
func (e *Expander) words(word string, env shell.EnvGetter) ([]string, error) {
	return e.newLex().ProcessWords(word, env)
}

// raw expands variables in a heredoc's body: quotes and escapes are kept
// (BuildKit's ExpandRaw).
func (e *Expander) raw(data string, env shell.EnvGetter) (string, error) {
	l := shell.NewLex('\\')
	l.SkipProcessQuotes = true
	out, _, err := l.ProcessWord(data, env)
	return out, err
}

// Expand returns c with its variables expanded with env, for the
// instructions BuildKit expands (ENV, LABEL, WORKDIR, USER, VOLUME,
// STOPSIGNAL, EXPOSE, COPY and ADD); the others (RUN, CMD, ENTRYPOINT,
// HEALTHCHECK, SHELL, ONBUILD, MAINTAINER, ARG) are returned as they are:
// a shell expands their variables when they run, or none are expanded.
func (e *Expander) Expand(c Command, env shell.EnvGetter) (Command, error) {
	word := func(s string) (string, error) { return e.Word(s, env) }
	switch c := c.(type) {
	case *Env:
		ps, err := expandPairs(c.Pairs, word)
		return &Env{Pairs: ps}, err
	case *Label:
		ps, err := expandPairs(c.Pairs, word)
		return &Label{Pairs: ps}, err
	case *Workdir:
		p, err := word(c.Path)
		return &Workdir{Path: p}, err
	case *User:
		u, err := word(c.Spec)
		return &User{Spec: u}, err
	case *StopSignal:
		s, err := word(c.Signal)
		return &StopSignal{Signal: s}, err
	case *Volume:
		ps, err := expandAll(c.Paths, word)
		return &Volume{Paths: ps}, err
	case *Expose:
		var ports []string
		for _, p := range c.Ports {
			ws, err := e.words(p, env)
			if err != nil {
				return nil, err
			}
			ports = append(ports, ws...)
		}
		return &Expose{Ports: ports}, nil
	case *Copy:
		return e.expandCopy(c, env)
	}
	return c, nil
}

func (e *Expander) expandCopy(c *Copy, env shell.EnvGetter) (*Copy, error) {
	word := func(s string) (string, error) { return e.Word(s, env) }
	out := *c
	var err error
	if out.Sources, err = expandAll(c.Sources, word); err != nil {
		return nil, err
	}
	for _, p := range []*string{&out.Dest, &out.Chown, &out.Chmod, &out.Checksum} {
		if *p, err = word(*p); err != nil {
			return nil, err
		}
	}
	out.Inline = slices.Clone(c.Inline)
	for i, f := range out.Inline {
		if f.Expand {
			if out.Inline[i].Data, err = e.raw(f.Data, env); err != nil {
				return nil, err
			}
		}
	}
	out.Excludes = slices.Clone(c.Excludes)
	return &out, nil
}

func expandPairs(in []KeyValue, word func(string) (string, error)) ([]KeyValue, error) {
	out := make([]KeyValue, len(in))
	for i, kv := range in {
		k, err := word(kv.Key)
		if err != nil {
			return nil, err
		}
		v, err := word(kv.Value)
		if err != nil {
			return nil, err
		}
		out[i] = KeyValue{Key: k, Value: v}
	}
	return out, nil
}

func expandAll(in []string, word func(string) (string, error)) ([]string, error) {
	out := make([]string, len(in))
	for i, s := range in {
		v, err := word(s)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// Mounts returns r's --mount flags parsed with env (BuildKit expands every
// field but from=).
func (e *Expander) Mounts(r *Run, env shell.EnvGetter) ([]Mount, error) {
	if len(r.Mounts) == 0 {
		return nil, nil
	}
	ms, err := parseMounts(r.node, func(w string) (string, error) { return e.Word(w, env) })
	if err != nil {
		return nil, err
	}
	if len(ms) != len(r.Mounts) {
		return nil, fmt.Errorf("RUN: %d --mount flags parsed as %d mounts", len(r.Mounts), len(ms))
	}
	out := make([]Mount, len(ms))
	for i, m := range ms {
		out[i] = Mount{Type: string(m.Type), From: m.From, FromStage: r.Mounts[i].FromStage, Source: m.Source,
			Target: m.Target, ReadOnly: m.ReadOnly, SizeLimit: m.SizeLimit, ID: m.CacheID,
			Sharing: string(m.CacheSharing), Required: m.Required, Env: m.Env, Mode: u32(m.Mode), UID: u32(m.UID), GID: u32(m.GID)}
	}
	return out, nil
}

func u32(p *uint64) *uint32 {
	if p == nil {
		return nil
	}
	v := uint32(*p)
	return &v
}

// parseMounts parses a RUN node again and expands its mounts: BuildKit's
// mount parser is reachable only through RunCommand.Expand.
func parseMounts(n *parser.Node, expand func(string) (string, error)) ([]*instructions.Mount, error) {
	v, err := parseInstruction(n)
	if err != nil {
		return nil, unwrapLocation(err)
	}
	rc, ok := v.(*instructions.RunCommand)
	if !ok {
		return nil, fmt.Errorf("not a RUN instruction: %T", v)
	}
	if err := rc.Expand(expand); err != nil {
		return nil, err
	}
	return instructions.GetMounts(rc), nil
}

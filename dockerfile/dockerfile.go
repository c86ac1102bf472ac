// Package dockerfile turns a Dockerfile into a Plan: the base image and the
// ordered, typed steps the builder executes. Parsing uses BuildKit's own
// parser and instruction parser, so syntax (line continuations, heredocs,
// the escape directive, JSON exec form, ENV's two syntaxes) behaves as with
// `docker build`.
//
// Only the target stage is planned: by default the last one, as BuildKit
// builds only what the target needs and, without COPY --from or FROM of an
// earlier stage (neither supported yet), earlier stages contribute nothing.
// Syntax errors and unknown instructions are reported for the whole file;
// "not supported yet" only for the target stage and for instructions before
// the first FROM. As with BuildKit, RUN/CMD/ENTRYPOINT arguments that are not
// valid JSON are shell form, not an error.
package dockerfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/stepexec/stepexec/internal/safefile"
)

// Plan is what the builder executes: start from Base, then run Steps in order.
type Plan struct {
	File         string // the Dockerfile's path as given, for messages "Dockerfile:LINE"
	Base         string // image reference of the target stage's FROM, as written (ARG is not supported, so nothing is expanded)
	BaseLocation Location
	Stage        string   // the target stage's name (FROM … AS name), "" if unnamed
	Steps        []Step   // in order, after FROM
	Warnings     []string // parser warnings (e.g. empty continuation lines), "FILE:LINE: text"

	escape rune // the file's escape token, for Expand
}

// Location is a span of lines in the Dockerfile, 1-based, inclusive.
type Location struct {
	File          string
	Line, EndLine int
}

// String returns "FILE:LINE", with the file as given to Parse.
func (l Location) String() string { return fmt.Sprintf("%s:%d", l.File, l.Line) }

// Step is one instruction of the target stage after its FROM.
type Step struct {
	Location Location
	Text     string  // the original instruction text, e.g. `RUN apk add foo` (continuation lines joined, heredoc bodies left out)
	Index    int     // 1-based position among steps
	Command  Command // *Run, *Cmd, *Entrypoint, *Env, *Workdir or *Label
}

// Command is one of the step types below.
type Command interface{ isCommand() }

// Run runs a command in the image being built. Shell form sets Shell and
// Script (the builder runs it with the image's shell, `/bin/sh -c`); exec
// form sets Args, run as is. A heredoc (`RUN <<EOF`) is shell form: a lone
// heredoc becomes the script itself, as BuildKit does; a heredoc inside a
// longer command line is handed to the shell whole.
type Run struct {
	Shell  bool
	Script string
	Args   []string
}

// Cmd sets the image's default command. Shell form: Shell set and Args holds
// the one command line; the builder prepends the shell.
type Cmd struct {
	Shell bool
	Args  []string
}

// Entrypoint sets the image's entrypoint, with the same forms as Cmd.
type Entrypoint struct {
	Shell bool
	Args  []string
}

// Env sets environment variables. Keys and values are the raw words as
// written (quotes and escapes included, e.g. `"a b"`); Plan.Expand removes
// quotes and expands variables, as BuildKit does at build time.
type Env struct{ Pairs []KeyValue }

// Workdir sets the working directory; the path is raw (see Plan.Expand), and a
// relative path is relative to the previous working directory.
type Workdir struct{ Path string }

// Label sets image labels; raw words as for Env (see Plan.Expand).
type Label struct{ Pairs []KeyValue }

// KeyValue is one pair of ENV or LABEL, in the order written.
type KeyValue struct{ Key, Value string }

func (*Run) isCommand()        {}
func (*Cmd) isCommand()        {}
func (*Entrypoint) isCommand() {}
func (*Env) isCommand()        {}
func (*Workdir) isCommand()    {}
func (*Label) isCommand()      {}

// ParseOptions tunes Parse.
type ParseOptions struct {
	// Target names the stage to build (FROM … AS Target, case-insensitive);
	// empty means the last stage.
	Target string
}

// Parse reads a Dockerfile; file is its path as given, used in messages.
func Parse(r io.Reader, file string) (*Plan, error) {
	return ParseWithOptions(r, file, ParseOptions{})
}

// ParseFile reads and parses the Dockerfile at path, which must be a
// regular file (a FIFO is refused rather than waited on).
func ParseFile(path string) (*Plan, error) {
	f, err := safefile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read Dockerfile: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}

// supported lists the instructions a plan can hold (FROM starts a stage).
var supported = map[string]bool{"from": true, "run": true, "cmd": true, "entrypoint": true, "env": true, "workdir": true, "label": true}

// stage is a stage as seen while parsing: its FROM and its commands.
type stage struct {
	name     string
	from     *instructions.Stage
	fromNode *parser.Node
	nodes    []*parser.Node
	cmds     []any // parsed instruction per node, nil where parsing failed
}

// ParseWithOptions is Parse with options. All errors are collected (one per
// line, "FILE:LINE: message") and returned together, so nothing runs before
// the whole file is known to be buildable.
func ParseWithOptions(r io.Reader, file string, opts ParseOptions) (*Plan, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s: the Dockerfile is empty", file)
	}
	if err := checkText(data, file); err != nil {
		return nil, err
	}
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, locErr(file, err, 0)
	}
	p := &Plan{File: file, escape: res.EscapeToken}
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil {
			line = w.Location.Start.Line
		}
		p.Warnings = append(p.Warnings, fmt.Sprintf("%s:%d: %s", file, line, w.Short))
	}

	var errs errList
	var stages []*stage
	for _, n := range res.AST.Children {
		loc := Location{File: file, Line: n.StartLine, EndLine: n.EndLine}
		name := strings.ToUpper(n.Value)
		v, err := instructions.ParseInstruction(n)
		if err != nil {
			var unknown *instructions.UnknownInstructionError
			if errors.As(err, &unknown) {
				errs.add(loc.Line, fmt.Errorf("%s: unknown instruction: %s", loc, name))
			} else {
				errs.add(loc.Line, fmt.Errorf("%s: %w", loc, unwrapLocation(err)))
			}
		}
		if s, ok := v.(*instructions.Stage); ok {
			stages = append(stages, &stage{name: s.Name, from: s, fromNode: n})
			continue
		}
		if len(stages) == 0 {
			if err == nil {
				// Before any FROM only ARG is legal, and ARG is not supported.
				if name == "ARG" {
					errs.add(loc.Line, fmt.Errorf("%s: ARG is not supported yet", loc))
				} else {
					errs.add(loc.Line, fmt.Errorf("%s: %s before the first FROM: a Dockerfile must start with FROM", loc, name))
				}
			}
			continue
		}
		st := stages[len(stages)-1]
		st.nodes = append(st.nodes, n)
		if err != nil {
			v = nil
		}
		st.cmds = append(st.cmds, v)
	}
	if len(stages) == 0 && len(errs) == 0 {
		errs.add(0, fmt.Errorf("%s: no FROM instruction: a Dockerfile must start with FROM", file))
	}
	if len(stages) > 0 {
		target := stages[len(stages)-1]
		if opts.Target != "" {
			target = nil
			for _, s := range stages {
				if strings.EqualFold(s.name, opts.Target) {
					target = s
					break
				}
			}
			if target == nil {
				errs.add(0, fmt.Errorf("%s: target stage %q not found", file, opts.Target))
			}
		}
		if target != nil {
			errs = append(errs, p.planStage(target, stages)...)
		}
	}
	if err := errs.join(); err != nil {
		return nil, err
	}
	return p, nil
}

// errList collects parse errors with their lines, reported in line order.
type errList []lineErr

type lineErr struct {
	line int
	err  error
}

func (l *errList) add(line int, err error) { *l = append(*l, lineErr{line, err}) }

func (l errList) join() error {
	sort.SliceStable(l, func(i, j int) bool { return l[i].line < l[j].line })
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e.err
	}
	return errors.Join(errs...)
}

// planStage fills p from the target stage and returns its errors.
func (p *Plan) planStage(t *stage, stages []*stage) errList {
	var errs errList
	fromLoc := Location{File: p.File, Line: t.fromNode.StartLine, EndLine: t.fromNode.EndLine}
	p.Base, p.BaseLocation, p.Stage = t.from.BaseName, fromLoc, t.name
	for _, f := range t.fromNode.Flags {
		errs.add(fromLoc.Line, fmt.Errorf("%s: FROM %s is not supported yet", fromLoc, flagName(f)))
	}
	for _, s := range stages {
		if s == t {
			break
		}
		if s.name != "" && strings.EqualFold(s.name, t.from.BaseName) {
			errs.add(fromLoc.Line, fmt.Errorf("%s: FROM an earlier stage (%s) is not supported yet", fromLoc, s.name))
		}
	}
	for i, n := range t.nodes {
		loc := Location{File: p.File, Line: n.StartLine, EndLine: n.EndLine}
		name := strings.ToUpper(n.Value)
		if !supported[strings.ToLower(n.Value)] {
			if t.cmds[i] != nil { // unknown/malformed ones are already reported
				errs.add(loc.Line, fmt.Errorf("%s: %s is not supported yet", loc, name))
			}
			continue
		}
		if t.cmds[i] == nil {
			continue
		}
		cmd, err := convert(t.cmds[i], n)
		if err != nil {
			errs.add(loc.Line, fmt.Errorf("%s: %w", loc, err))
			continue
		}
		p.Steps = append(p.Steps, Step{
			Location: loc,
			Text:     strings.TrimSpace(n.Original),
			Index:    len(p.Steps) + 1,
			Command:  cmd,
		})
	}
	return errs
}

func flagName(f string) string {
	name, _, _ := strings.Cut(f, "=")
	return name
}

// convert maps BuildKit's parsed instruction to a plan command.
func convert(v any, n *parser.Node) (Command, error) {
	switch c := v.(type) {
	case *instructions.RunCommand:
		for _, f := range n.Flags {
			return nil, fmt.Errorf("RUN %s is not supported yet", flagName(f))
		}
		return convertRun(c)
	case *instructions.CmdCommand:
		return &Cmd{Shell: c.PrependShell, Args: c.CmdLine}, nil
	case *instructions.EntrypointCommand:
		return &Entrypoint{Shell: c.PrependShell, Args: c.CmdLine}, nil
	case *instructions.EnvCommand:
		return &Env{Pairs: pairs(c.Env)}, nil
	case *instructions.LabelCommand:
		return &Label{Pairs: pairs(c.Labels)}, nil
	case *instructions.WorkdirCommand:
		return &Workdir{Path: c.Path}, nil
	}
	return nil, fmt.Errorf("%s: unexpected instruction type %T", strings.ToUpper(n.Value), v)
}

func convertRun(c *instructions.RunCommand) (Command, error) {
	if !c.PrependShell {
		if len(c.CmdLine) == 0 {
			return nil, errors.New("RUN: exec form with no command")
		}
		return &Run{Args: c.CmdLine}, nil
	}
	if len(c.CmdLine) == 0 {
		return nil, errors.New("RUN requires a command")
	}
	if len(c.CmdLine) != 1 {
		return nil, fmt.Errorf("RUN: unexpected shell form %q", c.CmdLine)
	}
	script := c.CmdLine[0]
	if len(c.Files) > 0 {
		// The same three cases as BuildKit's dispatchRun.
		if h := parser.MustParseHeredoc(script); h != nil {
			data := c.Files[0].Data
			if c.Files[0].Chomp {
				data = parser.ChompHeredocContent(data)
			}
			if strings.HasPrefix(data, "#!") {
				return nil, errors.New("RUN heredoc with a #! interpreter line is not supported yet")
			}
			script = data
		} else {
			var b strings.Builder
			b.WriteString(script)
			for _, f := range c.Files {
				b.WriteByte('\n')
				b.WriteString(f.Data)
				b.WriteString(f.Name)
			}
			script = b.String()
		}
	}
	if strings.TrimSpace(script) == "" {
		return nil, errors.New("RUN: empty command")
	}
	return &Run{Shell: true, Script: script}, nil
}

func pairs(kvs instructions.KeyValuePairs) []KeyValue {
	out := make([]KeyValue, len(kvs))
	for i, kv := range kvs {
		out[i] = KeyValue{Key: kv.Key, Value: kv.Value}
	}
	return out
}

// unwrapLocation drops BuildKit's location wrapper (we print FILE:LINE ourselves).
func unwrapLocation(err error) error {
	var le *parser.LocationError
	if errors.As(err, &le) {
		return le.Unwrap()
	}
	return err
}

// locErr formats a parser error with the line BuildKit attached, if any.
func locErr(file string, err error, fallback int) error {
	line := fallback
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		line = le.Locations[0][0].Start.Line
	}
	if line > 0 {
		return fmt.Errorf("%s:%d: %w", file, line, unwrapLocation(err))
	}
	return fmt.Errorf("%s: %w", file, unwrapLocation(err))
}

// Expand expands $VAR and ${VAR} references (with the ${VAR:-default} family
// and the file's escape token, as BuildKit does) in the keys and values of Env
// and Label and in Workdir's path, using env (nil: none set). All pairs of
// one instruction see the same env: `ENV A=1 B=$A` gives B the previous A,
// like docker. Run, Cmd and Entrypoint are returned unchanged: their shell
// expands at run time.
func (p *Plan) Expand(c Command, env *Environment) (Command, error) {
	esc := p.escape
	if esc == 0 {
		esc = parser.DefaultEscapeToken
	}
	lex := shell.NewLex(esc)
	word := func(s string) (string, error) {
		out, _, err := lex.ProcessWord(s, env) // a nil *Environment has nothing set
		return out, err
	}
	expandPairs := func(in []KeyValue) ([]KeyValue, error) {
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
	switch c := c.(type) {
	case *Env:
		ps, err := expandPairs(c.Pairs)
		if err != nil {
			return nil, fmt.Errorf("expand ENV: %w", err)
		}
		return &Env{Pairs: ps}, nil
	case *Label:
		ps, err := expandPairs(c.Pairs)
		if err != nil {
			return nil, fmt.Errorf("expand LABEL: %w", err)
		}
		return &Label{Pairs: ps}, nil
	case *Workdir:
		path, err := word(c.Path)
		if err != nil {
			return nil, fmt.Errorf("expand WORKDIR: %w", err)
		}
		return &Workdir{Path: path}, nil
	}
	return c, nil
}

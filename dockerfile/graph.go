package dockerfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Graph is a parsed Dockerfile: its stages, which stage to build, and the
// global build arguments its FROM lines were expanded with.
type Graph struct {
	File   string   // the Dockerfile's path as given, for messages
	Stages []*Stage // in file order
	Target *Stage
	// MetaArgs is the global scope: the platform arguments, then the ARGs
	// before the first FROM with their --build-arg values. An ARG without a
	// default inside a stage inherits its value from here.
	MetaArgs *Vars
	// BuildArgs are the --build-arg values.
	BuildArgs map[string]string
	Warnings  []string // "FILE:LINE: text"

	escape        rune
	globalArgKeys []string            // names the ARGs before the first FROM declare
	problems      map[*Stage]*errList // reported only for stages that are built
}

// Stage is one FROM and the steps after it.
type Stage struct {
	Index    int    // 0-based position in the file (COPY --from=N)
	Name     string // FROM … AS name, lower-cased; "" when unnamed
	BaseName string // the FROM reference after global-ARG expansion
	// Base is the earlier stage BaseName names; nil for an image or scratch.
	Base     *Stage
	Platform string // FROM --platform after expansion, "" when not given
	Location Location
	Steps    []Step

	deps []*Stage // stages this one reads: Base, COPY --from, RUN --mount from=
}

// IsScratch reports whether the stage starts from the empty image.
func (s *Stage) IsScratch() bool { return s.Base == nil && s.BaseName == "scratch" }

// DisplayName is the stage's name, or "stage-N" as BuildKit calls unnamed
// stages.
func (s *Stage) DisplayName() string {
	if s.Name != "" {
		return s.Name
	}
	return "stage-" + strconv.Itoa(s.Index)
}

// Deps returns the stages s needs built first, each once, in file order.
func (s *Stage) Deps() []*Stage { return slices.Clone(s.deps) }

// ParseOptions says what to build.
type ParseOptions struct {
	// Target names the stage to build (FROM … AS Target, case-insensitive);
	// empty means the last stage.
	Target string
	// BuildArgs are --build-arg values.
	BuildArgs map[string]string
}

// BuildPlatform is the only platform stepexec builds for: the machine's.
var BuildPlatform = Platform{OS: "linux", Arch: goarch()}

// Parse reads a Dockerfile; file is its path as given, used in messages.
// All errors that can be known without running anything are collected (one
// per line, "FILE:LINE: message", in line order) and returned together.
// Problems of stages the target does not need are reported only when
// BuildKit would report them too: syntax, unknown instructions and flags,
// and bad stage references; not e.g. unsupported flag values.
func Parse(r io.Reader, file string, opts ParseOptions) (*Graph, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s: the Dockerfile is empty", file)
	}
	if err := checkText(data, file); err != nil {
		return nil, err
	}
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, locErr(file, err)
	}
	g := &Graph{File: file, escape: res.EscapeToken, BuildArgs: opts.BuildArgs}
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil {
			line = w.Location.Start.Line
		}
		g.Warnings = append(g.Warnings, fmt.Sprintf("%s:%d: %s", file, line, w.Short))
	}
	if syntax, _, loc, ok := parser.DetectSyntax(data); ok {
		line := 1
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		g.Warnings = append(g.Warnings, fmt.Sprintf("%s:%d: ignoring # syntax=%s: stepexec always uses its built-in Dockerfile frontend", file, line, syntax))
	}

	var errs errList
	metaArgs, stages := g.split(res.AST, &errs)
	if len(errs) > 0 {
		return nil, errs.join()
	}
	g.MetaArgs = g.resolveMetaArgs(metaArgs, &errs)
	g.addStages(stages, &errs)
	if len(errs) == 0 {
		g.resolveTarget(opts.Target, &errs)
	}
	if g.Target != nil {
		for _, s := range g.Needed() {
			g.checkNeeded(s, &errs)
		}
	}
	if err := errs.join(); err != nil {
		return nil, err
	}
	g.warnUnusedArgs()
	return g, nil
}

// parsedNode is one instruction with BuildKit's parse of it.
type parsedNode struct {
	node *parser.Node
	loc  Location
	v    any
}

// split parses every instruction and groups them: ARGs before the first
// FROM, then each FROM with the instructions after it.
func (g *Graph) split(ast *parser.Node, errs *errList) ([]parsedNode, [][]parsedNode) {
	var meta []parsedNode
	var stages [][]parsedNode
	for _, n := range ast.Children {
		pn := parsedNode{node: n, loc: nodeLocation(g.File, n)}
		v, err := parseInstruction(n)
		if err != nil {
			var unknown *instructions.UnknownInstructionError
			if errors.As(err, &unknown) {
				errs.add(pn.loc, fmt.Errorf("unknown instruction: %s", strings.ToUpper(n.Value)))
			} else {
				errs.add(pn.loc, err)
			}
			continue
		}
		pn.v = v
		switch v.(type) {
		case *instructions.Stage:
			stages = append(stages, []parsedNode{pn})
		case *instructions.ArgCommand:
			if len(stages) == 0 {
				meta = append(meta, pn)
				continue
			}
			stages[len(stages)-1] = append(stages[len(stages)-1], pn)
		default:
			if len(stages) == 0 {
				errs.add(pn.loc, fmt.Errorf("%s before the first FROM: a Dockerfile must start with FROM (or ARG)", strings.ToUpper(n.Value)))
				continue
			}
			stages[len(stages)-1] = append(stages[len(stages)-1], pn)
		}
	}
	if len(stages) == 0 && len(*errs) == 0 {
		errs.addFile(fmt.Errorf("%s: no FROM instruction: a Dockerfile must have at least one stage", g.File))
	}
	return meta, stages
}

// resolveTarget picks the stage to build.
func (g *Graph) resolveTarget(target string, errs *errList) {
	if target == "" {
		g.Target = g.Stages[len(g.Stages)-1]
		return
	}
	for _, s := range g.Stages {
		if s.Name != "" && strings.EqualFold(s.Name, target) {
			g.Target = s
			return
		}
	}
	var names []string
	for _, s := range g.Stages {
		if s.Name != "" {
			names = append(names, s.Name)
		}
	}
	hint := "the Dockerfile names no stage (FROM … AS name)"
	if len(names) > 0 {
		hint = "its stages are " + strings.Join(names, ", ")
	}
	errs.addFile(fmt.Errorf("%s: target stage %q not found: %s", g.File, target, hint))
}

// Needed returns the target and every stage it depends on, in file order
// (dependencies always come earlier in the file).
func (g *Graph) Needed() []*Stage {
	need := map[*Stage]bool{}
	var visit func(*Stage)
	visit = func(s *Stage) {
		if need[s] {
			return
		}
		need[s] = true
		for _, d := range s.deps {
			visit(d)
		}
	}
	visit(g.Target)
	var out []*Stage
	for _, s := range g.Stages {
		if need[s] {
			out = append(out, s)
		}
	}
	return out
}

// stageByName finds a stage by its name (case-insensitive).
func (g *Graph) stageByName(name string) *Stage {
	for _, s := range g.Stages {
		if s.Name != "" && strings.EqualFold(s.Name, name) {
			return s
		}
	}
	return nil
}

// Expander returns the expander of this Dockerfile's variables (its escape
// token).
func (g *Graph) Expander() *Expander {
	esc := g.escape
	if esc == 0 {
		esc = parser.DefaultEscapeToken
	}
	return &Expander{escape: esc}
}

// Triggers parses the ONBUILD triggers of stage s's base image into steps
// to run before s's own (marked OnBuild, located at s's FROM), as BuildKit
// does. A trigger may add stage dependencies to s (COPY --from): callers
// compute Needed again afterwards.
func (g *Graph) Triggers(s *Stage, triggers []string) ([]Step, error) {
	var steps []Step
	var errs errList
	for _, t := range triggers {
		res, err := parser.Parse(strings.NewReader(t))
		if err != nil {
			errs.add(s.Location, fmt.Errorf("ONBUILD trigger %q of the base image: %w", t, unwrapLocation(err)))
			continue
		}
		if len(res.AST.Children) != 1 {
			errs.add(s.Location, fmt.Errorf("ONBUILD trigger %q of the base image: a trigger must be one instruction", t))
			continue
		}
		n := res.AST.Children[0]
		n.StartLine, n.EndLine = s.Location.Line, s.Location.EndLine
		pn := parsedNode{node: n, loc: s.Location}
		if pn.v, err = parseInstruction(n); err != nil {
			errs.add(s.Location, fmt.Errorf("ONBUILD trigger %q of the base image: %w", t, unwrapLocation(err)))
			continue
		}
		problems := &errList{}
		step, err := g.convert(pn, s, problems)
		if err == nil && len(*problems) > 0 {
			err = (*problems)[0].err
		}
		if err != nil {
			errs.add(s.Location, fmt.Errorf("ONBUILD trigger %q of the base image: %w", t, unwrapLocation(err)))
			continue
		}
		step.OnBuild = true
		steps = append(steps, step)
	}
	return steps, errs.join()
}

package dockerfile

import (
	"errors"
	"fmt"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// convertRun converts RUN: its command line (heredocs as BuildKit's
// dispatchRun treats them) and its flags.
func (g *Graph) convertRun(c *instructions.RunCommand, pn parsedNode, s *Stage, problems *errList) (Command, error) {
	r := &Run{node: pn.node, Network: instructions.GetNetwork(c), Security: instructions.GetSecurity(c)}
	if err := runCommandLine(r, c); err != nil {
		return nil, err
	}
	if r.Security == instructions.SecurityInsecure {
		problems.add(pn.loc, errors.New("RUN --security=insecure is not supported: steps never get more privileges than docker's defaults"))
	}
	for _, m := range instructions.GetMounts(c) {
		mf := MountFlag{From: m.From}
		dep, err := g.resolveRef("from", m.From, s)
		if err != nil {
			return nil, fmt.Errorf("RUN --mount: %w", err)
		}
		mf.FromStage = dep
		r.Mounts = append(r.Mounts, mf)
	}
	raws := mountFlagValues(pn.node)
	if len(raws) != len(r.Mounts) {
		return nil, fmt.Errorf("RUN: %d --mount flags parsed as %d mounts", len(raws), len(r.Mounts))
	}
	for i := range r.Mounts {
		r.Mounts[i].Raw = raws[i]
	}
	// Mounts without variables are validated now; the others when the step
	// runs, once their variables are known.
	if len(r.Mounts) > 0 && !strings.Contains(strings.Join(raws, ""), "$") {
		if _, err := parseMounts(pn.node, func(w string) (string, error) { return w, nil }); err != nil {
			return nil, fmt.Errorf("RUN --mount: %w", err)
		}
	}
	return r, nil
}

// runCommandLine fills r's command from BuildKit's parse.
func runCommandLine(r *Run, c *instructions.RunCommand) error {
	if !c.PrependShell {
		if len(c.CmdLine) == 0 {
			return errors.New("RUN: exec form with no command")
		}
		r.Args = append([]string(nil), c.CmdLine...)
		return nil
	}
	if len(c.CmdLine) == 0 {
		return errors.New("RUN requires a command")
	}
	if len(c.CmdLine) != 1 {
		return fmt.Errorf("RUN: unexpected shell form %q", c.CmdLine)
	}
	r.Shell = true
	script := c.CmdLine[0]
	if len(c.Files) > 0 {
		if h := parser.MustParseHeredoc(script); h != nil {
			data := c.Files[0].Data
			if c.Files[0].Chomp {
				data = parser.ChompHeredocContent(data)
			}
			if strings.HasPrefix(data, "#!") {
				r.File = &InlineFile{Name: c.Files[0].Name, Data: data}
				return nil
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
		return errors.New("RUN: empty command")
	}
	r.Script = script
	return nil
}

// mountFlagValues returns the values of a node's --mount flags in order.
func mountFlagValues(n *parser.Node) []string {
	var out []string
	for _, f := range n.Flags {
		name, val, ok := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		if ok && strings.EqualFold(name, "mount") {
			out = append(out, val)
		}
	}
	return out
}

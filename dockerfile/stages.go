package dockerfile

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// addStages turns each FROM group into a Stage: FROM expanded with the
// global scope, the base linked when it names an earlier stage, every
// instruction converted and its stage references resolved.
func (g *Graph) addStages(groups [][]parsedNode, errs *errList) {
	g.problems = map[*Stage]*errList{}
	for i, group := range groups {
		from := group[0]
		st := from.v.(*instructions.Stage)
		s := &Stage{Index: i, Name: st.Name, Location: from.loc}
		problems := &errList{}
		g.problems[s] = problems
		base, err := g.expandFrom(st.BaseName)
		switch {
		case err != nil:
			errs.add(from.loc, fmt.Errorf("FROM %s: %w", st.BaseName, err))
		case base == "":
			errs.add(from.loc, fmt.Errorf("FROM %s: base name is empty after expanding its variables (pass it with --build-arg or give the ARG a default)", st.BaseName))
		}
		s.BaseName = base
		if st.Platform != "" {
			p, err := g.expandFrom(st.Platform)
			if err != nil {
				errs.add(from.loc, fmt.Errorf("FROM --platform=%s: %w", st.Platform, err))
			} else if err := CheckPlatform(p); err != nil {
				problems.add(from.loc, fmt.Errorf("FROM --platform=%s: %w", st.Platform, err))
			}
			s.Platform = p
		}
		if prev := g.stageByName(s.Name); prev != nil && s.Name != "" {
			g.Warnings = append(g.Warnings, fmt.Sprintf("%s: duplicate stage name %q (also at line %d): later references mean this one", from.loc, s.Name, prev.Location.Line))
		}
		if b := g.earlierStage(base, i); b != nil {
			s.Base = b
			s.deps = append(s.deps, b)
		}
		g.Stages = append(g.Stages, s)
	}
	// Steps after all stages exist, so that a reference to a later stage
	// is recognized as one (and refused) rather than taken for an image.
	for i, group := range groups {
		s := g.Stages[i]
		for _, pn := range group[1:] {
			step, err := g.convert(pn, s, g.problems[s])
			if err != nil {
				errs.add(pn.loc, err)
				continue
			}
			s.Steps = append(s.Steps, step)
		}
	}
}

// earlierStage returns the stage before index i named name, the latest
// if several are.
func (g *Graph) earlierStage(name string, i int) *Stage {
	var found *Stage
	for _, s := range g.Stages[:i] {
		if s.Name != "" && s.Name == strings.ToLower(name) {
			found = s
		}
	}
	return found
}

// stageRef resolves a --from (COPY) or from= (RUN --mount) reference made
// in stage cur: a stage name or index must name an earlier stage; any other
// word is an image reference (nil stage).
func (g *Graph) stageRef(flag, ref string, cur *Stage) (*Stage, error) {
	if strings.Contains(ref, "$") {
		return nil, fmt.Errorf("%s=%s: variables are not expanded in %s; define a stage with `FROM ${VAR} AS name` (a global ARG) and use its name", flag, ref, flag)
	}
	if n, err := strconv.Atoi(ref); err == nil {
		if n < 0 || n >= len(g.Stages) {
			return nil, fmt.Errorf("%s=%d: there is no stage %d before this one (stages are counted from 0)", flag, n, n)
		}
		return g.Stages[n], nil
	}
	for _, s := range g.Stages {
		if s.Name != "" && strings.EqualFold(s.Name, ref) {
			return s, nil
		}
	}
	if strings.EqualFold(cur.Name, ref) {
		return nil, fmt.Errorf("%s=%s: a stage cannot use itself", flag, ref)
	}
	return nil, nil
}

// laterStage reports whether a name refers to a stage at or after cur (a
// forward or self reference, which BuildKit refuses).
func (g *Graph) laterStage(ref string, cur *Stage) *Stage {
	for _, s := range g.Stages[cur.Index:] {
		if s.Name != "" && strings.EqualFold(s.Name, ref) {
			return s
		}
	}
	return nil
}

func (g *Graph) addDep(s, dep *Stage) {
	for _, d := range s.deps {
		if d == dep {
			return
		}
	}
	s.deps = append(s.deps, dep)
}

// resolveRef links a stage reference of cur, or says why it cannot be.
func (g *Graph) resolveRef(flag, ref string, cur *Stage) (*Stage, error) {
	if ref == "" {
		return nil, nil
	}
	if l := g.laterStage(ref, cur); l != nil {
		if l == cur {
			return nil, fmt.Errorf("%s=%s: a stage cannot use itself", flag, ref)
		}
		return nil, fmt.Errorf("%s=%s: stage %q is defined after this one (line %d); a stage can only use earlier stages", flag, ref, l.Name, l.Location.Line)
	}
	dep, err := g.stageRef(flag, ref, cur)
	if err != nil {
		return nil, err
	}
	if dep == cur {
		return nil, fmt.Errorf("%s=%s: a stage cannot use itself", flag, ref)
	}
	if dep != nil && dep.Index > cur.Index {
		return nil, fmt.Errorf("%s=%s: stage %d is defined after this one; a stage can only use earlier stages", flag, ref, dep.Index)
	}
	if dep != nil {
		g.addDep(cur, dep)
	}
	return dep, nil
}

// checkNeeded reports the problems of a stage that is going to be built.
func (g *Graph) checkNeeded(s *Stage, errs *errList) {
	if p := g.problems[s]; p != nil {
		*errs = append(*errs, *p...)
	}
}

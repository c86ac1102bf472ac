package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/stepexec/stepexec/dockerfile"
	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/internal/cache"
)

// stagePlan is a needed stage ready to run.
type stagePlan struct {
	stage *dockerfile.Stage
	base  *Base             // the FROM image; nil for a stage or scratch
	steps []dockerfile.Step // the base's ONBUILD triggers, then the stage's own
	// images are the images COPY --from and RUN --mount from= name.
	images map[string]*Base
}

// planErrors collects located errors, reported in line order.
type planErrors []error

func (p *planErrors) add(err error) { *p = append(*p, err) }

func (p planErrors) join() error {
	sort.SliceStable(p, func(i, j int) bool { return errLine(p[i]) < errLine(p[j]) })
	return errors.Join(p...)
}

func errLine(err error) int {
	var le *dockerfile.LocatedError
	if errors.As(err, &le) {
		return le.Location.Line
	}
	var se *StepError
	if errors.As(err, &se) {
		return se.Location.Line
	}
	return 0
}

// plan resolves what each needed stage starts from (adding the base's
// ONBUILD triggers, which may need more stages), then walks every needed
// stage's instructions without running them: variables expanded, flags and
// context sources checked. Errors are collected for the whole build.
func plan(ctx context.Context, req Request, deps Deps) ([]*stagePlan, error) {
	g := req.Graph
	byStage := map[*dockerfile.Stage]*stagePlan{}
	images := map[string]*Base{}
	var errs planErrors
	resolve := func(ref string, loc dockerfile.Location, what string) *Base {
		if b, ok := images[ref]; ok {
			return b
		}
		b, err := deps.Images.Resolve(ctx, ref)
		if err != nil {
			if errors.Is(err, image.ErrNotFound) {
				err = fmt.Errorf("%s %q not found in the store (pull it with `stepexec pull`, or import one with `stepexec import`; `stepexec images` lists them)", what, ref)
			}
			errs.add(loc.Errorf("%w", err))
			images[ref] = nil
			return nil
		}
		images[ref] = &b
		return &b
	}
	for {
		added := false
		for _, s := range g.Needed() {
			if byStage[s] != nil {
				continue
			}
			added = true
			p := &stagePlan{stage: s, steps: s.Steps, images: map[string]*Base{}}
			byStage[s] = p
			var triggers []string
			switch {
			case s.Base != nil:
				triggers = onbuildOf(s.Base)
			case s.IsScratch():
			default:
				p.base = resolve(s.BaseName, s.Location, "base image")
				if p.base != nil {
					triggers = p.base.Config.Config.OnBuild
				}
			}
			if len(triggers) > 0 {
				tsteps, err := g.Triggers(s, triggers)
				if err != nil {
					errs.add(err)
				}
				p.steps = append(tsteps, s.Steps...)
			}
		}
		if !added {
			break
		}
	}
	var plans []*stagePlan
	for _, s := range g.Needed() {
		p := byStage[s]
		for _, ref := range imageRefs(p.steps) {
			if b := resolve(ref.name, ref.loc, "image"); b != nil {
				p.images[ref.name] = b
			}
		}
		plans = append(plans, p)
	}
	if err := dryRun(ctx, req, plans, &errs); len(errs) > 0 || err != nil {
		return nil, errs.join()
	}
	return plans, nil
}

// onbuildOf returns the ONBUILD instructions of a stage, as a stage FROM
// it runs them (BuildKit).
func onbuildOf(s *dockerfile.Stage) []string {
	var out []string
	for _, st := range s.Steps {
		if ob, ok := st.Command.(*dockerfile.Onbuild); ok {
			out = append(out, ob.Expression)
		}
	}
	return out
}

type imageRef struct {
	name string
	loc  dockerfile.Location
}

// imageRefs lists the images (not stages) steps copy or mount from.
func imageRefs(steps []dockerfile.Step) []imageRef {
	var out []imageRef
	for _, st := range steps {
		switch c := st.Command.(type) {
		case *dockerfile.Copy:
			if c.From != "" && c.FromStage == nil {
				out = append(out, imageRef{c.From, st.Location})
			}
		case *dockerfile.Run:
			for _, m := range c.Mounts {
				if m.From != "" && m.FromStage == nil {
					out = append(out, imageRef{m.From, st.Location})
				}
			}
		}
	}
	return out
}

// dryRun walks each planned stage's steps through their config effects,
// expanding and checking each instruction, so that an invalid --chmod, a
// missing COPY source or a bad mount fails the build before any step.
func dryRun(ctx context.Context, req Request, plans []*stagePlan, errs *planErrors) error {
	finals := map[*dockerfile.Stage]State{}
	for _, p := range plans {
		if p.failed(finals) {
			continue // its base is missing: already reported
		}
		st := p.startState(finals)
		for _, step := range p.steps {
			next, err := dryStep(ctx, req, p, st, step)
			if err != nil {
				errs.add(stepErr(step, err))
				continue
			}
			st = next
		}
		finals[p.stage] = st
	}
	return ctx.Err()
}

// failed reports whether the stage cannot be planned: its base image was
// not found, or its base stage could not be planned.
func (p *stagePlan) failed(finals map[*dockerfile.Stage]State) bool {
	if p.stage.Base != nil {
		_, ok := finals[p.stage.Base]
		return !ok
	}
	return !p.stage.IsScratch() && p.base == nil
}

// startState is the state a stage starts from, given the final states of
// earlier stages (dry or real). The base's ONBUILD triggers are consumed
// (they run as the stage's first steps), so the image does not keep them.
func (p *stagePlan) startState(finals map[*dockerfile.Stage]State) State {
	var st State
	switch {
	case p.stage.Base != nil:
		st = fromStage(finals[p.stage.Base])
	case p.base != nil:
		st = newState(p.base.Config, p.base.Layers)
		st.key = cache.Base(p.base.ID)
	default:
		st = scratchState()
		st.key = cache.Base("")
	}
	if len(st.cfg.Config.OnBuild) > 0 {
		st = st.withConfig(func(c *dockerspec.DockerOCIImageConfig) { c.OnBuild = nil })
	}
	return st
}

// dryStep is one step's config effect and checks, without running it.
func dryStep(ctx context.Context, req Request, p *stagePlan, st State, step dockerfile.Step) (State, error) {
	cmd, err := req.Graph.Expander().Expand(step.Command, st.RunEnv())
	if err != nil {
		return st, err
	}
	switch c := cmd.(type) {
	case *dockerfile.Run:
		if _, err := runMounts(req, p, st, c); err != nil {
			return st, err
		}
	case *dockerfile.Copy:
		if err := checkCopy(ctx, req, c, step); err != nil {
			return st, err
		}
	}
	return applyConfig(req, st, step, cmd)
}

// stepErr attributes err to step unless it already is a located error.
func stepErr(step dockerfile.Step, err error) error {
	var se *StepError
	var le *dockerfile.LocatedError
	if errors.As(err, &se) || errors.As(err, &le) {
		return err
	}
	text := step.Text
	if step.OnBuild {
		text = "ONBUILD " + strings.TrimSpace(text)
	}
	return &StepError{Location: step.Location, Text: text, Err: err}
}

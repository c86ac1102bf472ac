package dockerfile

import (
	"errors"
	"fmt"
	"sort"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Location is a span of lines in the Dockerfile, 1-based, inclusive.
type Location struct {
	File          string
	Line, EndLine int
}

// String returns "FILE:LINE", with the file as given to Parse.
func (l Location) String() string { return fmt.Sprintf("%s:%d", l.File, l.Line) }

// Errorf returns an error at the location: "FILE:LINE: message".
func (l Location) Errorf(format string, args ...any) error {
	return &LocatedError{Location: l, Err: fmt.Errorf(format, args...)}
}

// LocatedError is an error attributed to a place in the Dockerfile.
type LocatedError struct {
	Location Location
	Err      error
}

func (e *LocatedError) Error() string { return e.Location.String() + ": " + e.Err.Error() }
func (e *LocatedError) Unwrap() error { return e.Err }

func nodeLocation(file string, n *parser.Node) Location {
	return Location{File: file, Line: n.StartLine, EndLine: n.EndLine}
}

// errList collects errors with their lines, reported in line order, so that
// every problem of a file is known before anything runs.
type errList []lineErr

type lineErr struct {
	line int
	err  error
}

func (l *errList) add(loc Location, err error) {
	*l = append(*l, lineErr{loc.Line, &LocatedError{Location: loc, Err: unwrapLocation(err)}})
}

// addFile records an error about the whole file (no line).
func (l *errList) addFile(err error) { *l = append(*l, lineErr{0, err}) }

func (l errList) join() error {
	sort.SliceStable(l, func(i, j int) bool { return l[i].line < l[j].line })
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e.err
	}
	return errors.Join(errs...)
}

// unwrapLocation drops BuildKit's location wrapper (we print FILE:LINE
// ourselves).
func unwrapLocation(err error) error {
	if ours, ok := err.(*LocatedError); ok {
		return ours.Err
	}
	var le *parser.LocationError
	if errors.As(err, &le) {
		return le.Unwrap()
	}
	return err
}

// locErr formats a parser error with the line BuildKit attached, if any.
func locErr(file string, err error) error {
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		r := le.Locations[0][0]
		return &LocatedError{Location: Location{File: file, Line: r.Start.Line, EndLine: r.End.Line}, Err: le.Unwrap()}
	}
	return fmt.Errorf("%s: %w", file, err)
}

// parseInstruction is BuildKit's instructions.ParseInstruction with a
// linter that checks nothing: BuildKit's own call passes a nil one, which
// panics on a `# check=` comment above the instruction.
func parseInstruction(n *parser.Node) (any, error) {
	return instructions.ParseInstructionWithLinter(n, linter.New(&linter.Config{SkipAll: true}))
}

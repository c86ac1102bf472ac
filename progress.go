package stepexec

import (
	"io"
	"time"
)

// EventKind names a moment in a build that progress output shows.
type EventKind int

const (
	// StepStarted: a Dockerfile instruction begins (Text, Step, Steps).
	StepStarted EventKind = iota
	// BaseResolved: FROM found its image (Name, Digest = image ID).
	BaseResolved
	// SandboxCreated: the RUN's namespaces exist and its process runs (Duration: setup).
	SandboxCreated
	// CommandExited: the RUN's process ended (ExitCode, Duration: run time).
	CommandExited
	// LayerDiffed: the snapshot's upper dir was written as a layer and the
	// snapshot removed (Files, Bytes, Empty; Duration: the whole commit).
	LayerDiffed
	// LayerCommitted: the layer is in the store (Digest = diffID).
	LayerCommitted
	// SandboxRemoved: the step is over: its processes and namespaces were
	// torn down (Duration) before the diff, its snapshot with the commit.
	SandboxRemoved
	// StepDone: the instruction finished (Duration: whole step).
	StepDone
	// ImageWritten: the image config and manifest are stored (Digest = image ID).
	ImageWritten
	// ImageNamed: a name now points at the image (Name).
	ImageNamed
	// OutputWritten: the image was exported (Name = destination).
	OutputWritten
)

// Event is one progress report. Step is 1-based over the Dockerfile's
// instructions including FROM; 0 for build-wide events.
type Event struct {
	Kind     EventKind
	Step     int
	Steps    int
	Text     string
	Name     string
	Digest   string
	Duration time.Duration
	ExitCode int
	Files    int
	Bytes    int64
	Empty    bool
}

// Progress receives a build's events and its steps' output. Calls come from
// one goroutine at a time, except that Output's writer is written while a
// step runs.
type Progress interface {
	Event(Event)
	// Output is where step's stdout and stderr go.
	Output(step int) io.Writer
}

// discardProgress is used when the caller gives none.
type discardProgress struct{}

func (discardProgress) Event(Event)          {}
func (discardProgress) Output(int) io.Writer { return io.Discard }

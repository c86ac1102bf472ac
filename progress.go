package stepexec

import (
	"io"

	"github.com/stepexec/stepexec/internal/engine"
)

// Progress receives a build's events and its steps' output:
//
//	Event(Event)              // one moment of the build
//	Output(Vertex) io.Writer  // where a RUN step's stdout and stderr go
//
// Stages that do not depend on each other build at the same time, so both
// are called from several goroutines at once: implementations must be safe
// for concurrent use.
type Progress = engine.Progress

// Event is one progress report. Its fields:
//
//	Kind     EventKind      // which moment (the constants below say what each carries)
//	Vertex   Vertex         // the stage and step; zero for build-wide events
//	Text     string         // the instruction (StepStarted), a warning's text
//	Name     string         // a base image or stage, an image name, an output's path
//	Digest   string         // an image ID, a layer's diffID, an export's manifest digest
//	Duration time.Duration  // how long the moment took
//	ExitCode int            // a RUN's exit status (CommandExited)
//	Files    int            // files copied or changed
//	Bytes    int64          // their size
//	Empty    bool           // the step's layer holds no change
type Event = engine.Event

// Vertex names one step of a build:
//
//	Stage     int     // the stage's index in the Dockerfile, from 0
//	StageName string  // its name, or "stage-N"
//	Step      int     // the step's number in its stage, from 1 (its FROM)
//	Steps     int     // how many steps the stage has
type Vertex = engine.Vertex

// EventKind names a moment in a build that progress output shows.
type EventKind = engine.EventKind

// The moments of a build, with the Event fields each sets.
const (
	StepStarted    = engine.StepStarted    // an instruction begins: Text
	BaseResolved   = engine.BaseResolved   // FROM found its image (Name, Digest: image ID) or stage (Name)
	SandboxCreated = engine.SandboxCreated // a RUN's namespaces exist and its process runs: Duration
	CommandExited  = engine.CommandExited  // a RUN's process ended: ExitCode, Duration
	FilesCopied    = engine.FilesCopied    // a COPY or ADD wrote its files: Files, Bytes, Duration
	LayerDiffed    = engine.LayerDiffed    // the step's changes were written as a layer: Files, Bytes, Empty, Duration
	LayerCommitted = engine.LayerCommitted // the layer is in the store: Digest (diffID)
	SandboxRemoved = engine.SandboxRemoved // a RUN's processes and namespaces are gone: Duration
	StepCached     = engine.StepCached     // the step's layer came from the build cache: Digest (diffID)
	StepDone       = engine.StepDone       // the instruction finished: Duration
	Warning        = engine.Warning        // something the user should know: Text
	ImageWritten   = engine.ImageWritten   // the image is stored: Digest (image ID)
	ImageNamed     = engine.ImageNamed     // a name points at the image: Name
	OutputWritten  = engine.OutputWritten  // the image was exported: Name (the destination), Text (the type), Digest (an oci output's manifest)
	ImagePulling   = engine.ImagePulling   // an image is being pulled: Name (the reference as given)
	ImagePulled    = engine.ImagePulled    // the pull is stored: Name (the stored name), Digest (image ID), Duration
	ImagePushed    = engine.ImagePushed    // the image is in a registry: Name (the reference), Digest (its manifest), Duration
)

// ProgressFunc makes a Progress of a callback, called for every event,
// possibly from several goroutines at once (stages build concurrently);
// the steps' output is discarded. A nil f discards the events too.
func ProgressFunc(f func(Event)) Progress { return progressFunc(f) }

type progressFunc func(Event)

func (f progressFunc) Event(e Event) {
	if f != nil {
		f(e)
	}
}

func (progressFunc) Output(Vertex) io.Writer { return io.Discard }

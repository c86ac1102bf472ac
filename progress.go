package stepexec

import "github.com/stepexec/stepexec/internal/engine"

// Progress receives a build's events and its steps' output. Events come
// from concurrent stages: implementations must be safe for concurrent use.
type Progress = engine.Progress

// Event is one progress report; Vertex names the stage and step (zero for
// build-wide events).
type Event = engine.Event

// Vertex names one step of a build: a stage and a step in it.
type Vertex = engine.Vertex

// EventKind names a moment in a build that progress output shows.
type EventKind = engine.EventKind

// The moments of a build (see engine.EventKind for what each carries).
const (
	StepStarted    = engine.StepStarted
	BaseResolved   = engine.BaseResolved
	SandboxCreated = engine.SandboxCreated
	CommandExited  = engine.CommandExited
	FilesCopied    = engine.FilesCopied
	LayerDiffed    = engine.LayerDiffed
	LayerCommitted = engine.LayerCommitted
	SandboxRemoved = engine.SandboxRemoved
	StepCached     = engine.StepCached
	StepDone       = engine.StepDone
	Warning        = engine.Warning
	ImageWritten   = engine.ImageWritten
	ImageNamed     = engine.ImageNamed
	OutputWritten  = engine.OutputWritten
	ImagePulling   = engine.ImagePulling
	ImagePulled    = engine.ImagePulled
	ImagePushed    = engine.ImagePushed
)

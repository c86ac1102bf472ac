package engine

import (
	"io"
	"time"
)

// Vertex names one step of a build: a stage and a step in it.
type Vertex struct {
	Stage     int    // the stage's index in the Dockerfile (0-based)
	StageName string // its name, or "stage-N"
	Step      int    // 1-based within the stage; 1 is its FROM
	Steps     int    // the stage's steps, FROM and ONBUILD triggers included
}

// EventKind names a moment in a build that progress output shows.
type EventKind int

const (
	// StepStarted: an instruction begins (Text).
	StepStarted EventKind = iota
	// BaseResolved: FROM found its image (Name, Digest = image ID) or stage (Name).
	BaseResolved
	// SandboxCreated: a RUN's namespaces exist and its process runs (Duration: setup).
	SandboxCreated
	// CommandExited: a RUN's process ended (ExitCode, Duration: run time).
	CommandExited
	// FilesCopied: a COPY or ADD wrote its files (Files, Bytes, Duration).
	FilesCopied
	// LayerDiffed: the snapshot's upper dir was written as a layer and the
	// snapshot removed (Files, Bytes, Empty; Duration: the whole commit).
	LayerDiffed
	// LayerCommitted: the layer is in the store (Digest = diffID).
	LayerCommitted
	// SandboxRemoved: a RUN's processes and namespaces are gone (Duration).
	SandboxRemoved
	// StepCached: the step's result came from the build cache: no sandbox,
	// no snapshot, no layer made (Digest = the layer's diffID).
	StepCached
	// StepDone: the instruction finished (Duration: whole step).
	StepDone
	// Warning: something the user should know (Text), e.g. an unused --build-arg.
	Warning
	// ImageWritten: the image config and manifest are stored (Digest = image ID).
	ImageWritten
	// ImageNamed: a name now points at the image (Name).
	ImageNamed
	// OutputWritten: the image was exported (Name = destination, Text =
	// the output's type: oci, docker, local, tar; Digest = the manifest's
	// digest for oci).
	OutputWritten
	// ImagePulling: an image is being pulled from its registry (Name =
	// the reference as given).
	ImagePulling
	// ImagePulled: the pull is stored (Name = the stored name, Digest =
	// image ID, Duration).
	ImagePulled
	// ImagePushed: the image is in a registry (Name = the reference,
	// Digest = the manifest's digest, Duration).
	ImagePushed
)

// Event is one progress report. Vertex is zero for build-wide events.
type Event struct {
	Kind     EventKind
	Vertex   Vertex
	Text     string
	Name     string
	Digest   string
	Duration time.Duration
	ExitCode int
	Files    int
	Bytes    int64
	Empty    bool
}

// DiscardProgress drops every event and all output.
type DiscardProgress struct{}

func (DiscardProgress) Event(Event)             {}
func (DiscardProgress) Output(Vertex) io.Writer { return io.Discard }

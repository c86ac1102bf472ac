package engine

import (
	"context"
	"io"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/patternmatcher"

	"github.com/stepexec/stepexec/image"
	"github.com/stepexec/stepexec/runtime"
	"github.com/stepexec/stepexec/snapshot"
)

// The engine's dependencies are small interfaces, so that its tests run on
// a copy-based snapshotter and a fake runner without namespaces.

// Snapshots makes the writable and read-only trees steps work on.
type Snapshots interface {
	// Prepare mounts a writable snapshot on the layer parent ("" = empty).
	// forStep: a RUN step runs on it (real root: idmapped layers).
	Prepare(ctx context.Context, key, parent string, forStep bool) (*snapshot.Snapshot, error)
	// View mounts a read-only view of the layer parent ("" = empty dir).
	// forStep: a RUN step sees it through a bind mount (real root:
	// idmapped layers, Snapshot.IDMapped).
	View(ctx context.Context, key, parent string, forStep bool) (*snapshot.Snapshot, error)
	// Commit turns a writable snapshot into a layer on its parent and
	// removes the snapshot.
	Commit(ctx context.Context, key string) (snapshot.Committed, error)
	// Remove drops a snapshot or view without committing.
	Remove(ctx context.Context, key string) error
}

// Runner runs one RUN step's process (runtime.Runtime).
type Runner interface {
	Run(ctx context.Context, spec runtime.Spec) (runtime.Result, error)
}

// Base is an image a stage starts from or copies from.
type Base struct {
	Name   string // the stored name it was found under ("" when found by ID)
	ID     string // image ID (hex config digest)
	Config dockerspec.DockerOCIImage
	Layers []image.Layer // base first
}

// Images finds images in the store.
type Images interface {
	// Resolve looks up an image by reference; the error wraps
	// image.ErrNotFound when there is none.
	Resolve(ctx context.Context, ref string) (Base, error)
}

// ContextSource is the build context COPY, ADD and RUN --mount=type=bind
// read.
type ContextSource interface {
	Dir() string                            // the directory holding the context's files
	Ignore() *patternmatcher.PatternMatcher // .dockerignore rules, nil for none
}

// Progress receives a build's events and its steps' output. It must be
// safe for concurrent use: independent stages run at the same time.
type Progress interface {
	Event(Event)
	// Output is where a step's stdout and stderr go.
	Output(v Vertex) io.Writer
}

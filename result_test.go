package stepexec

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stepexec/stepexec/image"
)

// TestRecorder: events from concurrent stages all reach the caller's
// callback, and the names and exports among them make the Result.
func TestRecorder(t *testing.T) {
	var seen atomic.Int64
	rec := &recorder{next: ProgressFunc(func(Event) { seen.Add(1) })}
	var wg sync.WaitGroup
	for stage := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for step := 1; step <= 50; step++ {
				rec.Event(Event{Kind: StepStarted, Vertex: Vertex{Stage: stage, Step: step}})
				rec.Event(Event{Kind: StepDone, Vertex: Vertex{Stage: stage, Step: step}})
			}
		}()
	}
	wg.Wait()
	rec.Event(Event{Kind: ImageWritten, Digest: "sha256:abc"})
	rec.Event(Event{Kind: ImageNamed, Name: "localhost/a:latest"})
	rec.Event(Event{Kind: ImageNamed, Name: "localhost/b:1"})
	rec.Event(Event{Kind: OutputWritten, Name: "/out/oci", Text: "oci", Digest: "sha256:m1"})
	rec.Event(Event{Kind: OutputWritten, Name: "/out/rootfs", Text: "local"})
	rec.Event(Event{Kind: ImagePushed, Name: "127.0.0.1:5000/a:latest", Digest: "sha256:m2"})
	if got, want := seen.Load(), int64(8*50*2+6); got != want {
		t.Errorf("the callback saw %d events, want %d", got, want)
	}
	res := rec.result(image.Image{ID: "abc"})
	if res.ID != "sha256:abc" || res.Image.ID != "abc" {
		t.Errorf("ID %q, Image.ID %q", res.ID, res.Image.ID)
	}
	if want := []string{"localhost/a:latest", "localhost/b:1"}; !slices.Equal(res.Names, want) {
		t.Errorf("Names %v, want %v", res.Names, want)
	}
	want := []Export{{"/out/oci", "oci", "sha256:m1"}, {"/out/rootfs", "local", ""}, {"127.0.0.1:5000/a:latest", "registry", "sha256:m2"}}
	if !slices.Equal(res.Exports, want) {
		t.Errorf("Exports %v, want %v", res.Exports, want)
	}
}

// TestProgressFuncNil: a nil callback discards events and output.
func TestProgressFuncNil(t *testing.T) {
	p := ProgressFunc(nil)
	p.Event(Event{Kind: StepStarted})
	if n, err := fmt.Fprint(p.Output(Vertex{}), "x"); n != 1 || err != nil {
		t.Errorf("writing step output: %d, %v", n, err)
	}
}

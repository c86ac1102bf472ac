package stepexec_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/stepexec/stepexec"
)

// A program embedding stepexec with a main of its own: serve the re-exec
// roles first, enter the user namespace (the program re-executes itself
// once when not root), then build. Ctrl-C cancels the build, which then
// cleans up after itself.
func Example() {
	if stepexec.Reexec() {
		return
	}
	if err := stepexec.EnterNamespace(stepexec.SubIDs); err != nil {
		log.Fatal(err)
	}
	b, err := stepexec.Open()
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := b.Build(ctx, stepexec.BuildOptions{
		ContextDir: "examples/hello",
		Tags:       []string{"hello"},
		Outputs:    []stepexec.Output{{Type: "oci", Dest: "hello-oci"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("built", res.ID, "as", res.Names, "exported as", res.Exports[0].Digest)
}

// Main does all of the above: a build with a progress callback, which
// may be called from concurrent stages.
func ExampleMain() {
	stepexec.Main(func(ctx context.Context, b *stepexec.Builder) error {
		res, err := b.Build(ctx, stepexec.BuildOptions{
			ContextDir: ".",
			Progress: stepexec.ProgressFunc(func(e stepexec.Event) {
				if e.Kind == stepexec.StepStarted {
					log.Printf("[%s %d/%d] %s", e.Vertex.StageName, e.Vertex.Step, e.Vertex.Steps, e.Text)
				}
			}),
		})
		if err != nil {
			return err
		}
		fmt.Println(res.ID)
		return nil
	}, stepexec.WithRoot("/var/tmp/store"))
}

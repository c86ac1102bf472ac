package stepexec_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/stepexec/stepexec"
	"github.com/stepexec/stepexec/runtime/userns"
)

// A program embedding stepexec: serve the re-exec roles first, enter the
// user namespace (the program re-executes itself once when not root), then
// build. Ctrl-C cancels the build, which then cleans up after itself.
func Example() {
	if stepexec.Reexec() {
		return
	}
	if err := stepexec.EnterNamespace(userns.SubIDs); err != nil {
		log.Fatal(err)
	}
	b, err := stepexec.Open()
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	img, err := b.Build(ctx, stepexec.BuildOptions{
		ContextDir: "examples/hello",
		Tags:       []string{"hello"},
		Outputs:    []stepexec.Output{{Type: "oci", Dest: "hello-oci"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("built", img.ShortID())
}

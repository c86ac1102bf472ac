// Command embed builds the Dockerfile of the context directory it is given
// in-process, with stepexec's embedding API, names the image with the other
// arguments, and prints its ID. The store is containers/storage's default
// (or $CONTAINERS_STORAGE_CONF's), as podman's.
//
//	go build -tags "$(cat scripts/build-tags)" ./examples/embed
//	./embed examples/hello hello
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/stepexec/stepexec"
)

func main() {
	stepexec.Main(func(ctx context.Context, b *stepexec.Builder) error {
		if len(os.Args) < 2 {
			return fmt.Errorf("usage: %s CONTEXT [NAME...]", os.Args[0])
		}
		res, err := b.Build(ctx, stepexec.BuildOptions{ContextDir: os.Args[1], Tags: os.Args[2:]})
		if err != nil {
			return err
		}
		fmt.Println(res.ID)
		return nil
	})
}

package stepexec

import (
	"context"
	"fmt"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/stepexec/stepexec/dockerfile"
)

// envDockerfile is FROM and n ENV lines setting distinct variables, each
// value referring to the first one.
func envDockerfile(n int) string {
	var b strings.Builder
	b.WriteString("FROM alpine\n")
	for i := range n {
		fmt.Fprintf(&b, "ENV V%d=value-${V0:-none}-%d\n", i, i)
	}
	return b.String()
}

// runConfigSteps runs the plan's steps that only change the image config
// (ENV here), as Build does after FROM.
func runConfigSteps(tb testing.TB, plan *dockerfile.Plan) *buildState {
	bs := &buildState{plan: plan, config: inherit(ocispec.Image{})}
	bs.env = dockerfile.NewEnvironment(bs.config.Config.Env)
	for i, step := range plan.Steps {
		if err := bs.step(context.Background(), i+2, step); err != nil {
			tb.Fatal(err)
		}
	}
	return bs
}

// BenchmarkEnv runs 1,000 and 10,000 ENV instructions through the
// builder's ENV path (expansion against the current environment, then
// setting it); the time per instruction should not grow with their number.
func BenchmarkEnv(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		plan, err := dockerfile.Parse(strings.NewReader(envDockerfile(n)), "Dockerfile")
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				runConfigSteps(b, plan)
			}
		})
	}
}

func TestEnvSteps(t *testing.T) {
	src := envDockerfile(3) + "ENV V1=again-$V1 PATH=/x:$PATH\nENV A=1 B=$A\nENV A=2\n"
	plan, err := dockerfile.Parse(strings.NewReader(src), "Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	bs := runConfigSteps(t, plan)
	// Docker keeps a variable where it was first set; all pairs of one ENV
	// see the environment before it.
	want := []string{defaultPath[:5] + "/x:" + defaultPath[5:], "V0=value-none-0", "V1=again-value-value-none-0-1", "V2=value-value-none-0-2", "A=2", "B="}
	if got := bs.config.Config.Env; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("env =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

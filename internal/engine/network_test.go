package engine

import (
	"slices"
	"testing"

	"github.com/stepexec/stepexec/dockerfile"
	"github.com/stepexec/stepexec/runtime"
)

const networkDockerfile = `FROM alpine
RUN write /a 1
RUN --network=none write /b 1
RUN --network=host write /c 1
RUN --network=default write /d 1
`

// TestRunNetworkModes: a RUN's own --network wins, then the build's, then
// the host's default; the default's warning is said once per build.
func TestRunNetworkModes(t *testing.T) {
	tests := []struct {
		name, build string
		want        []runtime.Network
	}{
		{"no build mode", "", []runtime.Network{runtime.NetworkPrivate, runtime.NetworkNone, runtime.NetworkHost, runtime.NetworkPrivate}},
		{"build default", "default", []runtime.Network{runtime.NetworkPrivate, runtime.NetworkNone, runtime.NetworkHost, runtime.NetworkPrivate}},
		{"build none", "none", []runtime.Network{runtime.NetworkNone, runtime.NetworkNone, runtime.NetworkHost, runtime.NetworkNone}},
		{"build host", "host", []runtime.Network{runtime.NetworkHost, runtime.NetworkNone, runtime.NetworkHost, runtime.NetworkHost}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTestBuild(t)
			tb.mustSolve(networkDockerfile, dockerfile.ParseOptions{}, func(r *Request) {
				r.Network, r.DefaultNetwork, r.DefaultNetworkWarning = tt.build, runtime.NetworkPrivate, "falling back"
			})
			var got []runtime.Network
			for _, s := range tb.runner.specs {
				got = append(got, s.Network)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("step networks %v, want %v", got, tt.want)
			}
			warnings := 0
			for _, e := range tb.events.events {
				if e.Kind == Warning && e.Text == "falling back" {
					warnings++
				}
			}
			want := 0
			if slices.Contains(got, runtime.NetworkPrivate) {
				want = 1
			}
			if warnings != want {
				t.Errorf("%d default-network warnings, want %d", warnings, want)
			}
		})
	}
}

// TestRunNetworkInKey: the mode asked for is part of a RUN's key, the
// host's default is not (as in BuildKit, "default" is one mode whatever
// it means here).
func TestRunNetworkInKey(t *testing.T) {
	tb := cachedBuild(t)
	df := "FROM alpine\nRUN write /a 1\n"
	build := func(mode string, def runtime.Network) {
		tb.mustSolve(df, dockerfile.ParseOptions{}, func(r *Request) { r.Network, r.DefaultNetwork = mode, def })
	}
	build("", runtime.NetworkPrivate)
	build("", runtime.NetworkHost) // another default: a hit
	build("default", runtime.NetworkHost)
	if n := tb.specCount(); n != 1 {
		t.Fatalf("%d steps ran for three builds with the default mode, want 1", n)
	}
	build("none", runtime.NetworkHost)
	build("host", runtime.NetworkHost)
	if n := tb.specCount(); n != 3 {
		t.Errorf("%d steps ran, want 3: none and host are keys of their own", n)
	}
}

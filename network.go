package stepexec

import (
	"fmt"

	"github.com/stepexec/stepexec/internal/engine"
	"github.com/stepexec/stepexec/runtime"
)

// buildNetwork is a build's network choice, checked before any step runs.
type buildNetwork struct {
	mode     string // as asked: "" for the default
	fallback runtime.Network
	warning  string
}

// buildNetwork checks the --network mode asked for (a private network
// needs a NAT helper) and finds what the default means here.
func (b *Builder) buildNetwork(mode string) (buildNetwork, error) {
	if mode == "default" {
		mode = ""
	}
	if mode != "" {
		n, err := runtime.ParseNetwork(mode)
		if err != nil {
			return buildNetwork{}, fmt.Errorf("--network: %w", err)
		}
		if err := b.runtime.CheckNetwork(n); err != nil {
			return buildNetwork{}, err
		}
	}
	def, warning := b.runtime.DefaultNetwork()
	return buildNetwork{mode: mode, fallback: def, warning: warning}, nil
}

func (n buildNetwork) apply(req *engine.Request) {
	req.Network, req.DefaultNetwork, req.DefaultNetworkWarning = n.mode, n.fallback, n.warning
}

package stepexec

import (
	"fmt"
	"strings"

	"github.com/stepexec/stepexec/runtime"
)

// minMemory is docker's smallest --memory.
const minMemory = 6 << 20

func (o BuildOptions) limits() runtime.Limits {
	return runtime.Limits{Memory: o.Memory, Pids: o.PidsLimit}
}

// checkLimits refuses, before the build starts, limits that are invalid
// or that this host cannot apply.
func (b *Builder) checkLimits(o BuildOptions) error {
	switch {
	case o.Memory < 0:
		return fmt.Errorf("--memory %d: want a positive size, e.g. 512m", o.Memory)
	case o.Memory > 0 && o.Memory < minMemory:
		return fmt.Errorf("--memory %d: the minimum is 6MB, as docker's", o.Memory)
	case o.PidsLimit < 0:
		return fmt.Errorf("--pids-limit %d: want a positive number of processes", o.PidsLimit)
	}
	err := b.runtime.CheckLimits(o.limits())
	if err == nil {
		return nil
	}
	var what []string
	if o.Memory > 0 {
		what = append(what, "memory (--memory)")
	}
	if o.PidsLimit > 0 {
		what = append(what, "processes (--pids-limit)")
	}
	return fmt.Errorf("cannot limit RUN steps' %s on this host: %w", strings.Join(what, " and "), err)
}

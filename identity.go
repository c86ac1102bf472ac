package stepexec

import (
	"os"

	"github.com/stepexec/stepexec/runtime/userns"
)

// identity is how the process stands to the host's ids, detected once when
// the Builder opens: real root, or root of the user namespace
// EnterNamespace made in one of the modes.
type identity struct {
	realRoot bool
	mode     Mode
}

func detectIdentity() identity {
	return identity{realRoot: os.Geteuid() == 0 && !userns.InUserNamespace(), mode: userns.CurrentMode()}
}

// squashesOwners says whether files of other ids than 0 cannot be stored
// as they are (SingleUID: no other id exists in the namespace).
func (id identity) squashesOwners() bool {
	return !id.realRoot && id.mode == SingleUID
}

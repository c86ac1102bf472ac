//go:build stepexec_initexe

package runtime

import _ "embed"

// scripts/build.sh builds cmd/stepexec-init into this file first (it is
// not in git).
//
//go:embed stepexec-init.bin
var embeddedInit []byte

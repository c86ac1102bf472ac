//go:build !stepexec_initexe

package runtime

// Without scripts/build.sh's tag each step's init is the running binary.
var embeddedInit []byte

// Package stepinit is what runs in a RUN step's init process, libcontainer's
// "runc init": the step's pid 1 until it execs the step's command.
//
// It is kept small on purpose. The builder's binary can be its own init
// (every binary importing package runtime is), but then every step starts
// the whole builder's Go program (~300 package inits of the registry,
// storage and Dockerfile libraries) only to run this. cmd/stepexec-init
// is a binary of this package alone, which scripts/build.sh appends to the
// builder's binary; the builder seals it into a memfd once per build and
// has each step's init execute it instead (see runtime/initexe.go).
//
// Both ways the init does the same: Main sets the parent-death signal,
// arms the loader of the builder's precompiled seccomp filter (filter.go)
// and hands over to libcontainer.Init.
package stepinit

package runtime

import (
	goruntime "runtime"
	"sync"
)

// starter is a goroutine locked to an OS thread for the life of the
// process, on which every step's init is forked. The kernel sends a
// process its parent-death signal (dieWithBuilder) when the thread that
// forked it exits, not the process, and Go ends threads: those a goroutine
// locked and returned from, as libcontainer's own helpers do while a step
// starts. A step forked from any thread could be killed by that at random;
// forked from this one it dies exactly when the builder does.
var starter = sync.OnceValue(func() chan<- func() {
	jobs := make(chan func())
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread lives on
		for f := range jobs {
			f()
		}
	}()
	return jobs
})

// onStarter runs f on the starter's thread and returns its result; a
// panic in f is raised again in the caller.
func onStarter(f func() error) error {
	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	starter() <- func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{panic: p}
			}
		}()
		done <- result{err: f()}
	}
	r := <-done
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

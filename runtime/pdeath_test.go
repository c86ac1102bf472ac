package runtime

import (
	goruntime "runtime"
	"testing"
)

// TestStepSurvivesThreadExits ends many OS threads of the builder while a
// step runs (a goroutine that exits locked to its thread ends the thread,
// as libcontainer's mount-source goroutine does): the step's parent-death
// signal must not fire, since its thread is the one that forked the step.
func TestStepSurvivesThreadExits(t *testing.T) {
	rootfs, r := sharedRootfs(t), newRuntime(t)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			ended := make(chan struct{})
			go func() {
				goruntime.LockOSThread() // never unlocked: the thread ends with the goroutine
				close(ended)
			}()
			<-ended
		}
	}()
	res, _, errOut := run(t, r, rootfs, nil, "sleep 0.5")
	close(stop)
	<-done
	if res.ExitCode != 0 {
		t.Errorf("the step ended with %d while builder threads ended: %s", res.ExitCode, errOut)
	}
}

package activities

import (
	"context"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
)

// keepAlive heartbeats for the running step until the returned stop is
// called. Our steps are short database writes, but a write can wait on a
// row lock or a struggling database for up to the step's start-to-close
// timeout. While it waits, the heartbeat lets Temporal notice a dead
// worker within the heartbeat timeout instead, and it is the only way a
// pause, reset or cancellation of the activity (from the Web UI or the
// temporal CLI) reaches a running step: the SDK learns of them from the
// heartbeat's answer and cancels ctx.
//
// The first heartbeat goes out after half the heartbeat timeout, so a
// quick step sends none: heartbeats cost a write on the Temporal server
// (never a history event), and the normal path should not pay for them.
// Local activities cannot heartbeat; for them, and outside an activity
// (unit tests), keepAlive does nothing.
func keepAlive(ctx context.Context) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	info := activity.GetInfo(ctx)
	if info.IsLocalActivity || info.HeartbeatTimeout <= 0 {
		return func() {}
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(info.HeartbeatTimeout / 2)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				// No details: they would be stored with the activity,
				// and nothing here needs resuming.
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

package faults

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
)

// The webhook process is killed (SIGKILL) twice under load. Whatever it
// had acknowledged is in the inbox and reaches its workflow; what it had
// not answered, CTM sends again. The second kill comes while Temporal is
// frozen, so the dead process surely holds leases on deliveries it had
// not handed over: its successor claims them once the leases run out.
func TestWebhookKilledUnderLoad(t *testing.T) {
	const calls, rate = 100, 20.0
	temporal := startTemporal(t)
	s := newSetup(t, testenv.PostgresURL(t), temporal.addr)
	wh := s.webhook(nil)
	s.worker()

	samples, sends := callSends(s, calls, 8_000_000)
	l := newLoad(s, rate)
	done := make(chan []result, 1)
	go func() { done <- l.run(ctx(t, 5*time.Minute), sends) }()

	waitFor(t, time.Minute, "a quarter of the load", func() bool {
		return l.started.Load() >= int64(len(sends)/4)
	})
	wh.kill()
	s.restartWebhook(wh)

	waitFor(t, time.Minute, "half of the load", func() bool {
		return l.started.Load() >= int64(len(sends)/2)
	})
	temporal.signal(syscall.SIGSTOP)
	var leased int
	waitFor(t, 30*time.Second, "deliveries leased to the webhook process, not handed over", func() bool {
		leased = leasedPending(t, s.store)
		return leased > 0
	})
	wh.kill()
	temporal.signal(syscall.SIGCONT)
	s.restartWebhook(wh)

	results := <-done
	before := summarize(results)
	l.retry(t, sends, results, 2*time.Minute)
	after := summarize(results)
	t.Logf("load at %.0f/s: %s; after CTM's retries: %d acknowledged; leased to the killed process: %d",
		rate, before, after.acked, leased)
	assert.Zero(t, after.other, "nothing but 2xx, 503 or no answer")

	n := checkNothingLost(t, s, sends, results, 3*time.Minute)
	checkCallsEnded(t, s, samples, 3*time.Minute)
	t.Logf("deliveries acknowledged: %d, reached their workflow: %d, lost: 0", n, n)
}

// leasedPending counts deliveries a relay holds and has not handed over.
func leasedPending(t *testing.T, st *store.Store) int {
	t.Helper()
	ds, err := st.ListDeliveries(context.Background(), store.DeliveryFilter{
		Status: models.DeliveryPending, Limit: 200,
	})
	require.NoError(t, err)
	n := 0
	for _, d := range ds {
		if d.LeaseOwner != "" {
			n++
		}
	}
	return n
}

package faults

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/testenv"
)

// Temporal is unreachable for a stretch while CTM keeps posting. Every
// webhook is still acknowledged (the answer never waits on Temporal), the
// backlog waits in the inbox, and drains once Temporal is back; every call
// ends as it should, each effect once.
func TestTemporalUnreachableUnderLoad(t *testing.T) {
	const calls, rate = 150, 20.0
	temporal := startTemporal(t)
	s := newSetup(t, testenv.PostgresURL(t), temporal.addr)
	s.webhook(nil)
	s.worker()

	samples, sends := callSends(s, calls, 7_000_000)
	l := newLoad(s, rate)
	done := make(chan []result, 1)
	go func() { done <- l.run(ctx(t, 5*time.Minute), sends) }()

	// Stop Temporal a quarter of the way in; bring it back once sixty
	// more webhooks have been sent.
	waitFor(t, time.Minute, "a quarter of the load", func() bool {
		return l.started.Load() >= int64(len(sends)/4)
	})
	temporal.stop()
	downAt, ackedBefore := l.started.Load(), l.acked.Load()
	waitFor(t, time.Minute, "sixty webhooks sent while Temporal is down", func() bool {
		return l.started.Load() >= min(downAt+60, int64(len(sends)))
	})
	ackedDown := l.acked.Load() - ackedBefore
	stats, err := s.store.InboxStats(t.Context())
	require.NoError(t, err)
	temporal.restart()

	results := <-done
	sum := summarize(results)
	t.Logf("load at %.0f/s: %s; %d acknowledged while Temporal was down, %d deliveries waiting when it returned",
		rate, sum, ackedDown, stats.Pending)
	assert.Equal(t, len(sends), sum.acked, "every webhook acknowledged, Temporal or not")
	assert.Positive(t, ackedDown, "webhooks were acknowledged while Temporal was down")
	assert.Positive(t, stats.Pending, "a backlog waited for Temporal")

	n := checkNothingLost(t, s, sends, results, 3*time.Minute)
	checkCallsEnded(t, s, samples, 3*time.Minute)
	pending, err := s.inboxPending()
	require.NoError(t, err)
	assert.Zero(t, pending, "the inbox drained")
	t.Logf("deliveries acknowledged: %d, reached their workflow: %d, lost: 0", n, n)
}

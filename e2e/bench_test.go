package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/bench"
	"github.com/ctmflow/ctmflow/teststack"
	"github.com/ctmflow/ctmflow/workflows"
)

// TestBenchHarnessDrivesRealLifecycles keeps the benchmark harness honest:
// a short run against a real stack must complete every lifecycle it
// starts, duplicates and late updates included. It checks behaviour only;
// the figures come from `ctmflow bench`.
func TestBenchHarnessDrivesRealLifecycles(t *testing.T) {
	s := teststack.Start(t, teststack.Options{})
	target := &bench.Target{URL: s.BaseURL, Token: s.Token, AccountID: s.AccountID, Secret: s.Secret}
	ctx := context.Background()

	rep := bench.Lifecycles(ctx, target, bench.LifecycleOptions{
		Rate: 10, Duration: time.Second, Duplicates: 0.5, LateUpdates: 0.5,
	})
	require.Empty(t, rep.FirstErrors)
	assert.Positive(t, rep.Started)
	assert.Equal(t, rep.Started, rep.Completed)
	assert.Equal(t, int(rep.Started), rep.StartToLead.N)

	ids := make([]string, 0, len(rep.CallIDs))
	for _, id := range rep.CallIDs {
		ids = append(ids, workflows.CallWorkflowID(s.AccountID, id))
	}
	ev, err := bench.HistoryEvents(ctx, s.Client, ids)
	require.NoError(t, err)
	assert.LessOrEqual(t, ev.Max, int64(33), "history events of a start+end call")

	floor, err := bench.StartFloor(s.Client)
	require.NoError(t, err)
	defer floor.Stop()
	first, errs := floor.FirstActivity(ctx, 10, 500*time.Millisecond)
	assert.Zero(t, errs)
	assert.Positive(t, first.N)
	n, errs, _ := floor.Lifecycles(ctx, 2, 500*time.Millisecond)
	assert.Zero(t, errs)
	assert.Positive(t, n)

	acks := bench.Acks(ctx, target, bench.AckOptions{Rate: 50, Duration: 500 * time.Millisecond})
	assert.Zero(t, acks.Errors)
	assert.Equal(t, acks.Sent, acks.Accepted)
}

package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/ctmflow/ctmflow/activities"
	"github.com/ctmflow/ctmflow/models"
)

var (
	inProgress = activities.FetchCallResult{Status: activities.CTMCallInProgress}
	// fromAPI is CTM's call object, stored as delivery 50.
	fromAPI = activities.FetchCallResult{Status: activities.CTMCallEnded, DeliveryID: 50}
)

// TestCallWorkflowAsksCTMWhenTheEndNeverComes covers what the workflow
// does with each answer of CTM's API after the end wait times out.
func TestCallWorkflowAsksCTMWhenTheEndNeverComes(t *testing.T) {
	cases := []struct {
		name    string
		fetches []activities.FetchCallResult
		// wantCalls counts activities beyond the start's RecordCall.
		wantCalls map[string]int
		wantStage string
	}{
		{
			name:    "ended: applied as if the end webhook had come",
			fetches: []activities.FetchCallResult{fromAPI},
			wantCalls: map[string]int{"FetchCall": 1, "RecordCall": 1, "AttachRecording": 1,
				"AttachTranscript": 1, "RecordOutcome": 1, "RecordOutcome(ends)": 1},
			wantStage: models.StageEnded,
		},
		{
			name:    "in progress, then ended",
			fetches: []activities.FetchCallResult{inProgress, inProgress, fromAPI},
			wantCalls: map[string]int{"FetchCall": 3, "RecordCall": 1, "AttachRecording": 1,
				"AttachTranscript": 1, "RecordOutcome": 1, "RecordOutcome(ends)": 1},
			wantStage: models.StageEnded,
		},
		{
			name:      "in progress every time: given up after the last check",
			fetches:   []activities.FetchCallResult{inProgress, inProgress, inProgress, inProgress},
			wantCalls: map[string]int{"FetchCall": 3, "MarkEndMissing": 1},
			wantStage: models.StageEndMissing,
		},
		{
			name:      "unknown to CTM",
			fetches:   []activities.FetchCallResult{{Status: activities.CTMCallUnknown}},
			wantCalls: map[string]int{"FetchCall": 1, "MarkEndMissing": 1},
			wantStage: models.StageEndMissing,
		},
		{
			name:      "no API keys for the account",
			wantCalls: map[string]int{"FetchCall": 1, "MarkEndMissing": 1},
			wantStage: models.StageEndMissing,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newCallEnv(t)
			e.records = map[int64]activities.RecordCallResult{1: started, 50: ended}
			e.fetches = tc.fetches
			e.RegisterDelayedCallback(func() { e.SignalWorkflow(SignalDelivery, startDelivery(1)) }, 0)
			var rechecking State
			// The first check happens at 2h; a re-wait lasts 30m.
			e.RegisterDelayedCallback(func() { rechecking = e.query() }, 2*time.Hour+10*time.Minute)

			e.ExecuteWorkflow(CallWorkflow, CallInput{
				AccountID: 7, CallID: 99, EndTimeout: 2 * time.Hour, EndChecks: 3, EndRecheck: 30 * time.Minute,
			})

			require.True(t, e.IsWorkflowCompleted())
			require.NoError(t, e.GetWorkflowError())
			tc.wantCalls["RecordCall"]++ // the start
			assert.Equal(t, tc.wantCalls, e.calls)
			assert.Equal(t, tc.wantStage, e.query().Stage)
			assert.Equal(t, tc.wantCalls["FetchCall"], e.query().EndChecks)
			if len(tc.fetches) > 1 && tc.fetches[0] == inProgress {
				assert.Equal(t, WaitingForEnd, rechecking.WaitingFor, "waiting again after an in-progress answer")
				assert.Equal(t, 1, rechecking.EndChecks)
			}
		})
	}
}

func TestCallWorkflowEndWebhookDuringTheRecheck(t *testing.T) {
	e := newCallEnv(t)
	e.records = map[int64]activities.RecordCallResult{1: started, 2: ended}
	e.fetches = []activities.FetchCallResult{inProgress}
	e.RegisterDelayedCallback(func() { e.SignalWorkflow(SignalDelivery, startDelivery(1)) }, 0)
	e.deliver(time.Hour+10*time.Minute, endDelivery(2))

	e.ExecuteWorkflow(CallWorkflow, CallInput{AccountID: 7, CallID: 99, EndTimeout: time.Hour, EndRecheck: time.Hour})

	require.NoError(t, e.GetWorkflowError())
	assert.Equal(t, 1, e.calls["FetchCall"], "the webhook came before a second check")
	assert.Equal(t, 1, e.calls["RecordOutcome(ends)"])
	assert.Zero(t, e.calls["MarkEndMissing"])
}

func TestCallWorkflowRefusedKeysParkForOps(t *testing.T) {
	env := newEnv()
	env.RegisterActivity(acts)
	env.OnActivity(acts.RecordCall, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.DeliveryInput) (activities.RecordCallResult, error) {
			if in.DeliveryID == fromAPI.DeliveryID {
				return ended, nil
			}
			return started, nil
		})
	env.OnActivity(acts.FetchCall, mock.Anything, mock.Anything).Return(activities.FetchCallResult{},
		temporal.NewNonRetryableApplicationError("ctm api: status 401", activities.ErrTypeCTMUnauthorized, nil)).Once()
	env.OnActivity(acts.FetchCall, mock.Anything, mock.Anything).Return(fromAPI, nil)
	env.OnActivity(acts.AttachRecording, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(acts.AttachTranscript, mock.Anything, mock.Anything).Return(nil)
	outcomes := 0
	env.OnActivity(acts.RecordOutcome, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.OutcomeInput) error { outcomes++; return nil })

	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalDelivery, startDelivery(1)) }, 0)
	var parked State
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryState)
		require.NoError(t, err)
		require.NoError(t, v.Get(&parked))
		// Keys fixed: ops retry.
		env.SignalWorkflow(SignalOps, OpsDecision{Action: OpsRetry})
	}, 2*time.Hour)

	env.ExecuteWorkflow(CallWorkflow, CallInput{AccountID: 7, CallID: 99, EndTimeout: time.Hour})

	require.NoError(t, env.GetWorkflowError())
	require.Len(t, parked.Parked, 1)
	assert.Equal(t, "ask CTM for the end", parked.Parked[0].Step)
	assert.Equal(t, 1, outcomes)
}

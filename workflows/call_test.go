package workflows

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/ctmflow/ctmflow/activities"
	"github.com/ctmflow/ctmflow/models"
)

// callEnv is a time-skipping test environment for CallWorkflow whose
// activities answer from a script keyed by delivery id.
type callEnv struct {
	*testsuite.TestWorkflowEnvironment
	t *testing.T
	// records is what RecordCall answers for each delivery id.
	records map[int64]activities.RecordCallResult
	// calls counts activity invocations by name.
	calls map[string]int
	// fetches are FetchCall's answers, in turn; when they run out it
	// answers that the account has no API keys.
	fetches []activities.FetchCallResult
}

// newEnv returns a quiet test environment: the SDK's test logger prints
// every timer at debug level.
func newEnv() *testsuite.TestWorkflowEnvironment {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	return suite.NewTestWorkflowEnvironment()
}

func newCallEnv(t *testing.T) *callEnv {
	e := &callEnv{
		TestWorkflowEnvironment: newEnv(),
		t:                       t,
		records:                 map[int64]activities.RecordCallResult{},
		calls:                   map[string]int{},
	}
	e.RegisterActivity(acts)
	e.OnActivity(acts.RecordCall, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.DeliveryInput) (activities.RecordCallResult, error) {
			e.calls["RecordCall"]++
			rec, ok := e.records[in.DeliveryID]
			if !ok {
				t.Errorf("RecordCall for unscripted delivery %d", in.DeliveryID)
			}
			return rec, nil
		})
	for name, fn := range map[string]any{
		"AttachRecording":  acts.AttachRecording,
		"AttachTranscript": acts.AttachTranscript,
	} {
		count := func(context.Context, activities.DeliveryInput) error {
			e.calls[name]++
			return nil
		}
		e.OnActivity(fn, mock.Anything, mock.Anything).Return(count)
	}
	outcome := func(_ context.Context, in activities.OutcomeInput) error {
		e.calls["RecordOutcome"]++
		if in.Ends {
			e.calls["RecordOutcome(ends)"]++
		}
		return nil
	}
	e.OnActivity(acts.RecordOutcome, mock.Anything, mock.Anything).Return(outcome)
	markMissing := func(context.Context, activities.CallRef) error {
		e.calls["MarkEndMissing"]++
		return nil
	}
	e.OnActivity(acts.MarkEndMissing, mock.Anything, mock.Anything).Return(markMissing)
	e.OnActivity(acts.FetchCall, mock.Anything, mock.Anything).Return(
		func(_ context.Context, _ activities.CallRef) (activities.FetchCallResult, error) {
			e.calls["FetchCall"]++
			if len(e.fetches) == 0 {
				return activities.FetchCallResult{Status: activities.CTMNoKeys}, nil
			}
			res := e.fetches[0]
			e.fetches = e.fetches[1:]
			return res, nil
		})
	return e
}

// deliver schedules a delivery signal after the given delay.
func (e *callEnv) deliver(after time.Duration, d Delivery) {
	e.RegisterDelayedCallback(func() {
		e.SignalWorkflow(SignalDelivery, d)
	}, after)
}

func (e *callEnv) query() State {
	v, err := e.QueryWorkflow(QueryState)
	require.NoError(e.t, err)
	var s State
	require.NoError(e.t, v.Get(&s))
	return s
}

var (
	started = activities.RecordCallResult{LeadID: 1, CallRowID: 10, Stage: models.StageStarted, Source: "Google Ads"}
	ended   = activities.RecordCallResult{
		LeadID: 1, CallRowID: 10, Stage: models.StageStarted,
		Finished: true, HasRecording: true, HasTranscript: true, HasOutcome: true,
	}
	// lateUpdate is what RecordCall says in a later run: the stored call
	// has already ended.
	lateUpdate = activities.RecordCallResult{
		LeadID: 1, CallRowID: 10, Stage: models.StageEnded,
		Finished: true, HasTranscript: true, HasOutcome: true,
	}
)

// fullEnd is what an end with recording and transcript runs, after n
// RecordCalls.
func fullEnd(records int) map[string]int {
	return map[string]int{
		"RecordCall": records, "AttachRecording": 1, "AttachTranscript": 1,
		"RecordOutcome": 1, "RecordOutcome(ends)": 1,
	}
}

func startDelivery(id int64) Delivery { return Delivery{ID: id, Kind: models.KindCallStart} }
func endDelivery(id int64) Delivery   { return Delivery{ID: id, Kind: models.KindCallEnd} }

func TestCallWorkflowOrderings(t *testing.T) {
	cases := []struct {
		name       string
		first      Delivery
		later      []Delivery
		records    map[int64]activities.RecordCallResult
		wantCalls  map[string]int
		wantStage  string
		wantWaited bool
	}{
		{
			name:      "start then end",
			first:     startDelivery(1),
			later:     []Delivery{endDelivery(2)},
			records:   map[int64]activities.RecordCallResult{1: started, 2: ended},
			wantCalls: fullEnd(2),
			wantStage: models.StageEnded,
		},
		{
			name:      "end before start: no wait",
			first:     endDelivery(2),
			records:   map[int64]activities.RecordCallResult{2: ended},
			wantCalls: fullEnd(1),
			wantStage: models.StageEnded,
		},
		{
			name:      "the same start three times, then the end",
			first:     startDelivery(1),
			later:     []Delivery{startDelivery(1), startDelivery(1), endDelivery(2)},
			records:   map[int64]activities.RecordCallResult{1: started, 2: ended},
			wantCalls: fullEnd(4),
			wantStage: models.StageEnded,
		},
		{
			name:    "late update in a new run: applied, no wait",
			first:   Delivery{ID: 3, Kind: models.KindCallUpdate},
			records: map[int64]activities.RecordCallResult{3: lateUpdate},
			wantCalls: map[string]int{
				"RecordCall": 1, "AttachTranscript": 1, "RecordOutcome": 1, "RecordOutcome(ends)": 1,
			},
			wantStage: models.StageEnded,
		},
		{
			name:  "late start after the end, in a new run: nothing more",
			first: startDelivery(1),
			records: map[int64]activities.RecordCallResult{
				1: {LeadID: 1, CallRowID: 10, Stage: models.StageEnded},
			},
			wantCalls: map[string]int{"RecordCall": 1},
			wantStage: models.StageEnded,
		},
		{
			name:  "start while an earlier run gave up on the end: nothing more",
			first: startDelivery(1),
			records: map[int64]activities.RecordCallResult{
				1: {LeadID: 1, CallRowID: 10, Stage: models.StageEndMissing},
			},
			wantCalls: map[string]int{"RecordCall": 1},
			wantStage: models.StageEndMissing,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newCallEnv(t)
			e.records = tc.records
			for i, d := range tc.later {
				e.deliver(time.Duration(i+1)*time.Minute, d)
			}
			e.RegisterDelayedCallback(func() { e.SignalWorkflow(SignalDelivery, tc.first) }, 0)

			e.ExecuteWorkflow(CallWorkflow, CallInput{AccountID: 7, CallID: 99, EndTimeout: time.Hour})

			require.True(t, e.IsWorkflowCompleted())
			require.NoError(t, e.GetWorkflowError())
			assert.Equal(t, tc.wantCalls, e.calls)
			assert.Zero(t, e.calls["MarkEndMissing"], "the end arrived")
			assert.Equal(t, tc.wantStage, e.query().Stage)
		})
	}
}

func TestCallWorkflowEndNeverArrives(t *testing.T) {
	e := newCallEnv(t)
	e.records = map[int64]activities.RecordCallResult{1: started}
	e.RegisterDelayedCallback(func() { e.SignalWorkflow(SignalDelivery, startDelivery(1)) }, 0)
	var waiting State
	e.RegisterDelayedCallback(func() { waiting = e.query() }, 30*time.Minute)

	e.ExecuteWorkflow(CallWorkflow, CallInput{AccountID: 7, CallID: 99, EndTimeout: 2 * time.Hour})

	require.True(t, e.IsWorkflowCompleted())
	require.NoError(t, e.GetWorkflowError())
	assert.Equal(t, WaitingForEnd, waiting.WaitingFor)
	assert.Equal(t, models.StageStarted, waiting.Stage)
	assert.Equal(t, int64(1), waiting.LeadID)
	assert.Equal(t, 1, e.calls["MarkEndMissing"])
	assert.Equal(t, models.StageEndMissing, e.query().Stage)
}

func TestCallWorkflowDeliveryJustBeforeTimeout(t *testing.T) {
	e := newCallEnv(t)
	e.records = map[int64]activities.RecordCallResult{1: started, 2: ended}
	e.RegisterDelayedCallback(func() { e.SignalWorkflow(SignalDelivery, startDelivery(1)) }, 0)
	e.deliver(time.Hour-time.Second, endDelivery(2))

	e.ExecuteWorkflow(CallWorkflow, CallInput{AccountID: 7, CallID: 99, EndTimeout: time.Hour})

	require.NoError(t, e.GetWorkflowError())
	assert.Zero(t, e.calls["MarkEndMissing"])
	assert.Equal(t, 1, e.calls["RecordOutcome(ends)"])
}

func TestCallWorkflowParksFailedStepForOps(t *testing.T) {
	cases := []struct {
		name     string
		decision OpsDecision
		// wantAttempts is how often the failing step ran.
		wantAttempts int
	}{
		{name: "retry", decision: OpsDecision{Action: OpsRetry}, wantAttempts: 2},
		{name: "skip the step by name", decision: OpsDecision{Action: OpsSkip, Step: "attach transcript"},
			wantAttempts: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv()
			env.RegisterActivity(acts)
			env.OnActivity(acts.RecordCall, mock.Anything, mock.Anything).Return(ended, nil)
			env.OnActivity(acts.AttachRecording, mock.Anything, mock.Anything).Return(nil)
			env.OnActivity(acts.RecordOutcome, mock.Anything, mock.Anything).Return(nil)
			attempts := 0
			env.OnActivity(acts.AttachTranscript, mock.Anything, mock.Anything).Return(
				func(_ context.Context, _ activities.DeliveryInput) error {
					attempts++
					if attempts == 1 {
						return temporal.NewNonRetryableApplicationError("transcript store down", "Test", nil)
					}
					return nil
				})

			var parked State
			var attention []bool
			env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
				sa := args.Get(0).(temporal.SearchAttributes)
				if v, ok := sa.GetBool(SearchNeedsAttention); ok {
					attention = append(attention, v)
				}
			}).Return(nil)
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalDelivery, endDelivery(2)) }, 0)
			env.RegisterDelayedCallback(func() {
				v, err := env.QueryWorkflow(QueryState)
				require.NoError(t, err)
				require.NoError(t, v.Get(&parked))
				env.SignalWorkflow(SignalOps, tc.decision)
			}, time.Hour)

			env.ExecuteWorkflow(CallWorkflow, CallInput{AccountID: 7, CallID: 99})

			require.True(t, env.IsWorkflowCompleted())
			require.NoError(t, env.GetWorkflowError())
			assert.Equal(t, tc.wantAttempts, attempts)
			require.Len(t, parked.Parked, 1)
			assert.Equal(t, "attach transcript", parked.Parked[0].Step)
			assert.Contains(t, parked.Parked[0].Error, "transcript store down")
			assert.Equal(t, WaitingForOps, parked.WaitingFor)
			assert.Equal(t, []bool{true, false}, attention)
		})
	}
}

func TestOpsDecisionForAnotherStepLeavesParkedStepWaiting(t *testing.T) {
	env := newEnv()
	env.RegisterActivity(acts)
	env.OnActivity(acts.RecordCall, mock.Anything, mock.Anything).Return(
		activities.RecordCallResult{Stage: models.StageStarted, Finished: true, HasOutcome: true}, nil)
	env.OnActivity(acts.RecordOutcome, mock.Anything, mock.Anything).Return(
		temporal.NewNonRetryableApplicationError("db down", "Test", nil)).Once()
	env.OnActivity(acts.RecordOutcome, mock.Anything, mock.Anything).Return(nil)

	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalDelivery, endDelivery(2)) }, 0)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalOps, OpsDecision{Action: OpsSkip, Step: "attach recording"})
		env.SignalWorkflow(SignalOps, OpsDecision{Action: "reboot"})
	}, time.Minute)
	var stillParked State
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryState)
		require.NoError(t, err)
		require.NoError(t, v.Get(&stillParked))
		env.SignalWorkflow(SignalOps, OpsDecision{Action: "RETRY"})
	}, 2*time.Minute)

	env.ExecuteWorkflow(CallWorkflow, CallInput{AccountID: 7, CallID: 99})

	require.NoError(t, env.GetWorkflowError())
	require.Len(t, stillParked.Parked, 1, "a decision for another step, or an unknown action, is ignored")
	assert.Equal(t, "record outcome", stillParked.Parked[0].Step)
}

func TestFailureMessageIsInnermost(t *testing.T) {
	inner := errors.New("recording outcome: connection refused")
	cases := map[string]error{
		"a plain cause": temporal.NewApplicationErrorWithCause("activity failed", "X", inner),
		"an application error as cause": temporal.NewApplicationErrorWithCause("activity failed", "X",
			temporal.NewApplicationError("recording outcome: connection refused", "PgError")),
	}
	for name, err := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, "recording outcome: connection refused", failureMessage(err))
		})
	}
}

func TestWorkflowIDs(t *testing.T) {
	assert.Equal(t, "ctm-call-12-345", CallWorkflowID(12, 345))
	assert.Equal(t, "ctm-message-12-346", MessageWorkflowID(12, 346))
}

func TestStepParksWhenRetriesRunOut(t *testing.T) {
	env := newEnv()
	env.RegisterActivity(acts)
	env.OnActivity(acts.RecordCall, mock.Anything, mock.Anything).Return(
		activities.RecordCallResult{Stage: models.StageStarted, Finished: true, HasRecording: true}, nil)
	env.OnActivity(acts.RecordOutcome, mock.Anything, mock.Anything).Return(nil)
	failing := true
	env.OnActivity(acts.AttachRecording, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.DeliveryInput) error {
			if failing {
				return errors.New("recording store unreachable")
			}
			return nil
		})

	var parked State
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalDelivery, endDelivery(2)) }, 0)
	// attachOptions retries for an hour; by two hours the step is parked.
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryState)
		require.NoError(t, err)
		require.NoError(t, v.Get(&parked))
		failing = false
		env.SignalWorkflow(SignalOps, OpsDecision{Action: OpsRetry})
	}, 2*time.Hour)

	env.ExecuteWorkflow(CallWorkflow, CallInput{AccountID: 7, CallID: 99})

	require.NoError(t, env.GetWorkflowError())
	require.Len(t, parked.Parked, 1)
	assert.Equal(t, "attach recording", parked.Parked[0].Step)
}

func TestCurrentDetailsTellTheStory(t *testing.T) {
	env := newEnv()
	env.RegisterActivity(acts)
	env.OnActivity(acts.RecordCall, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.DeliveryInput) (activities.RecordCallResult, error) {
			if in.DeliveryID == 1 {
				return started, nil
			}
			return ended, nil
		})
	env.OnActivity(acts.AttachRecording, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(acts.RecordOutcome, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(acts.AttachTranscript, mock.Anything, mock.Anything).Return(
		temporal.NewNonRetryableApplicationError("transcript store down", "Test", nil)).Once()
	env.OnActivity(acts.AttachTranscript, mock.Anything, mock.Anything).Return(nil)

	details := func() string {
		v, err := env.QueryWorkflow("__temporal_workflow_metadata")
		require.NoError(t, err)
		var md sdkpb.WorkflowMetadata
		require.NoError(t, v.Get(&md))
		return md.GetCurrentDetails()
	}
	var waiting, parked string
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalDelivery, startDelivery(1)) }, 0)
	env.RegisterDelayedCallback(func() { waiting = details() }, 30*time.Minute)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalDelivery, endDelivery(2)) }, time.Hour)
	env.RegisterDelayedCallback(func() {
		parked = details()
		env.SignalWorkflow(SignalOps, OpsDecision{Action: OpsRetry})
	}, 2*time.Hour)

	env.ExecuteWorkflow(CallWorkflow, CallInput{AccountID: 7, CallID: 99, EndTimeout: 4 * time.Hour})

	require.NoError(t, env.GetWorkflowError())
	assert.Contains(t, waiting, "**Stage** started · **lead** 1 · 1 delivery")
	assert.Contains(t, waiting, "Waiting for the call-end webhook until")
	assert.Contains(t, parked, "**Needs attention.**")
	assert.Contains(t, parked, "**attach transcript**")
	assert.Contains(t, parked, "transcript store down")
	assert.Contains(t, parked, "`ctmflow ops retry default-test-workflow-id`")
	final := details()
	assert.Contains(t, final, "**Stage** ended · **lead** 1 · 2 deliveries")
	assert.NotContains(t, final, "Needs attention")
	assert.NotContains(t, final, "Waiting")
}

// stepKinds counts how each activity type ran: locally or as a regular
// activity.
type stepKinds struct{ local, regular map[string]int }

func watchSteps(env *testsuite.TestWorkflowEnvironment) *stepKinds {
	k := &stepKinds{local: map[string]int{}, regular: map[string]int{}}
	env.SetOnLocalActivityStartedListener(func(info *activity.Info, _ context.Context, _ []any) {
		k.local[info.ActivityType.Name]++
	})
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		k.regular[info.ActivityType.Name]++
	})
	return k
}

func TestQuickStepsRunLocallyAndFallBackToActivities(t *testing.T) {
	cases := []struct {
		name string
		// failures is how many times AttachTranscript fails first.
		failures int
		nonRetry bool
		// wantRegular lists the steps that ran as regular activities.
		wantRegular []string
		wantParked  bool
	}{
		{name: "every step local"},
		{name: "a brief failure is retried locally", failures: 2},
		{name: "a lasting failure moves the step to an activity", failures: 12,
			wantRegular: []string{"AttachTranscript"}},
		{name: "an unreadable delivery parks at once", failures: 1, nonRetry: true, wantParked: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv()
			env.RegisterActivity(acts)
			kinds := watchSteps(env)
			env.OnActivity(acts.RecordCall, mock.Anything, mock.Anything).Return(ended, nil)
			env.OnActivity(acts.AttachRecording, mock.Anything, mock.Anything).Return(nil)
			env.OnActivity(acts.RecordOutcome, mock.Anything, mock.Anything).Return(nil)
			calls := 0
			env.OnActivity(acts.AttachTranscript, mock.Anything, mock.Anything).Return(
				func(context.Context, activities.DeliveryInput) error {
					calls++
					switch {
					case calls > tc.failures:
						return nil
					case tc.nonRetry:
						return temporal.NewNonRetryableApplicationError("purged", activities.ErrTypePurged, nil)
					}
					return errors.New("transcript store busy")
				})
			var parked State
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalDelivery, endDelivery(2)) }, 0)
			env.RegisterDelayedCallback(func() {
				v, err := env.QueryWorkflow(QueryState)
				require.NoError(t, err)
				require.NoError(t, v.Get(&parked))
				env.SignalWorkflow(SignalOps, OpsDecision{Action: OpsRetry})
			}, 2*time.Hour)

			env.ExecuteWorkflow(CallWorkflow, CallInput{AccountID: 7, CallID: 99, QuickSteps: true})

			require.NoError(t, env.GetWorkflowError())
			var regular []string
			for name := range kinds.regular {
				regular = append(regular, name)
			}
			assert.ElementsMatch(t, tc.wantRegular, regular)
			assert.Equal(t, 1, kinds.local["AttachRecording"])
			assert.Equal(t, 1, kinds.local["RecordOutcome"])
			assert.Equal(t, tc.wantParked, len(parked.Parked) == 1, "parked: %v", parked.Parked)
		})
	}
}

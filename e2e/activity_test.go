package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/ctmflow/ctmflow/api"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/teststack"
	"github.com/ctmflow/ctmflow/workflows"
)

// Temporal's own activity commands (the Web UI's pending-activity menu,
// `temporal activity pause|unpause|reset`) work on our steps. The server
// needs no flag for them since 1.27's experimental phase; these tests call
// the same API the UI does.

// TestPauseReachesARunningStep pauses a step while it runs, blocked on a
// database lock. Only the step's heartbeat can tell it that it is paused:
// without keepAlive the pause would wait for the lock.
func TestPauseReachesARunningStep(t *testing.T) {
	pg := testenv.PostgresURL(t)
	s := teststack.Start(t, teststack.Options{DatabaseURL: pg})
	phone := "+12395550187"
	sample := s.Sample(7301, phone)
	status, _ := s.Post(t, "call-start", sample.StartBody())
	require.Equal(t, http.StatusAccepted, status)
	waitCallStage(t, s, phone, 7301, models.StageStarted)

	release := testenv.BlockUpdates(t, pg, "calls", "transcript")
	status, _ = s.Post(t, "call-end", sample.EndBody())
	require.Equal(t, http.StatusAccepted, status)
	wfID := workflows.CallWorkflowID(s.AccountID, 7301)

	teststack.Eventually(t, 30*time.Second, "the blocked step's heartbeat", func() bool {
		a := pendingActivity(t, s, wfID, "AttachTranscript")
		return a != nil && a.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED &&
			a.GetLastHeartbeatTime() != nil
	})
	pause(t, s, wfID, "AttachTranscript")
	teststack.Eventually(t, 30*time.Second, "the running step to stop, paused", func() bool {
		a := pendingActivity(t, s, wfID, "AttachTranscript")
		// PAUSE_REQUESTED until the worker hears of it and stops.
		return a != nil && a.GetState() == enumspb.PENDING_ACTIVITY_STATE_PAUSED
	})
	a := pendingActivity(t, s, wfID, "AttachTranscript")
	assert.True(t, a.GetPaused())
	assert.Equal(t, "ops test", a.GetPauseInfo().GetManual().GetReason())

	release()
	unpause(t, s, wfID, "AttachTranscript")
	waitClosed(t, s, wfID)
	waitCall(t, s, phone, 7301, "the transcript after unpausing",
		func(c *api.Call) bool { return c.Transcript != "" })
}

// TestResetAPausedStep pauses a failing step between its retries, resets
// its attempts while it stays paused, and lets it finish once the cause
// is fixed.
func TestResetAPausedStep(t *testing.T) {
	dbURL := testenv.SQLiteURL(t)
	s := teststack.Start(t, teststack.Options{DatabaseURL: dbURL})
	phone := "+12395550188"
	sample := s.Sample(7302, phone)
	status, _ := s.Post(t, "call-start", sample.StartBody())
	require.Equal(t, http.StatusAccepted, status)
	waitCallStage(t, s, phone, 7302, models.StageStarted)

	repair := testenv.FailUpdates(t, dbURL, "calls", "transcript", transcriptFault)
	status, _ = s.Post(t, "call-end", sample.EndBody())
	require.Equal(t, http.StatusAccepted, status)
	wfID := workflows.CallWorkflowID(s.AccountID, 7302)

	teststack.Eventually(t, 30*time.Second, "the failing step's third attempt", func() bool {
		a := pendingActivity(t, s, wfID, "AttachTranscript")
		return a != nil && a.GetAttempt() >= 3
	})
	pause(t, s, wfID, "AttachTranscript")
	teststack.Eventually(t, 30*time.Second, "the step paused", func() bool {
		a := pendingActivity(t, s, wfID, "AttachTranscript")
		return a != nil && a.GetState() == enumspb.PENDING_ACTIVITY_STATE_PAUSED
	})
	assert.Contains(t, pendingActivity(t, s, wfID, "AttachTranscript").GetLastFailure().GetMessage(),
		transcriptFault)

	svc := s.Client.WorkflowService()
	_, err := svc.ResetActivity(context.Background(), &workflowservice.ResetActivityRequest{
		Namespace:  s.Config.TemporalNamespace,
		Execution:  &commonpb.WorkflowExecution{WorkflowId: wfID},
		Activity:   &workflowservice.ResetActivityRequest_Type{Type: "AttachTranscript"},
		KeepPaused: true,
		Identity:   "e2e",
	})
	require.NoError(t, err)
	a := pendingActivity(t, s, wfID, "AttachTranscript")
	assert.Equal(t, int32(1), a.GetAttempt(), "reset starts the attempts over")
	assert.True(t, a.GetPaused(), "and keeps the step paused")

	repair()
	unpause(t, s, wfID, "AttachTranscript")
	waitClosed(t, s, wfID)
	waitCall(t, s, phone, 7302, "the transcript after unpausing",
		func(c *api.Call) bool { return c.Transcript != "" })
}

func pendingActivity(
	t *testing.T, s *teststack.Stack, wfID, activityType string,
) *workflowpb.PendingActivityInfo {
	t.Helper()
	d, err := s.Client.DescribeWorkflowExecution(context.Background(), wfID, "")
	require.NoError(t, err)
	for _, a := range d.GetPendingActivities() {
		if a.GetActivityType().GetName() == activityType {
			return a
		}
	}
	return nil
}

func pause(t *testing.T, s *teststack.Stack, wfID, activityType string) {
	t.Helper()
	svc := s.Client.WorkflowService()
	_, err := svc.PauseActivity(context.Background(), &workflowservice.PauseActivityRequest{
		Namespace: s.Config.TemporalNamespace,
		Execution: &commonpb.WorkflowExecution{WorkflowId: wfID},
		Activity:  &workflowservice.PauseActivityRequest_Type{Type: activityType},
		Reason:    "ops test",
		Identity:  "e2e",
	})
	require.NoError(t, err)
}

func unpause(t *testing.T, s *teststack.Stack, wfID, activityType string) {
	t.Helper()
	svc := s.Client.WorkflowService()
	_, err := svc.UnpauseActivity(context.Background(), &workflowservice.UnpauseActivityRequest{
		Namespace: s.Config.TemporalNamespace,
		Execution: &commonpb.WorkflowExecution{WorkflowId: wfID},
		Activity:  &workflowservice.UnpauseActivityRequest_Type{Type: activityType},
		Identity:  "e2e",
	})
	require.NoError(t, err)
}

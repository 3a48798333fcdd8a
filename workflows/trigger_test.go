package workflows_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/ctmflow/ctmflow/triggers"
	"github.com/ctmflow/ctmflow/workflows"
)

func triggerEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, *triggers.Sender) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(workflows.TriggerWorkflow)
	s := &triggers.Sender{}
	env.RegisterActivity(s)
	return env, s
}

func TestTriggerWorkflowDelivers(t *testing.T) {
	env, s := triggerEnv(t)
	env.OnActivity(s.SendTrigger, mock.Anything, triggers.SendInput{
		DeliveryID: 5, Run: 1, Retry: workflows.DefaultTriggerSchedule,
	}).Return(nil).Once()

	env.ExecuteWorkflow(workflows.TriggerWorkflow, workflows.TriggerInput{DeliveryID: 5, Run: 1})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	env.AssertExpectations(t)
	env.AssertNotCalled(t, "FailTrigger", mock.Anything, mock.Anything)
}

func TestTriggerWorkflowDestinationGone(t *testing.T) {
	env, s := triggerEnv(t)
	env.OnActivity(s.SendTrigger, mock.Anything, mock.Anything).Return(
		temporal.NewNonRetryableApplicationError("destination answered 410 Gone; rule disabled",
			triggers.ErrTypeGone, nil)).Once()
	env.OnActivity(s.FailTrigger, mock.Anything, triggers.FailInput{
		DeliveryID: 5, Reason: "destination answered 410 Gone; rule disabled",
	}).Return(nil).Once()

	env.ExecuteWorkflow(workflows.TriggerWorkflow, workflows.TriggerInput{DeliveryID: 5})
	require.True(t, env.IsWorkflowCompleted())
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(env.GetWorkflowError(), &appErr))
	assert.Equal(t, workflows.ErrTypeTriggerFailed, appErr.Type())
	env.AssertExpectations(t)
}

// TestTriggerWorkflowRetriesForADay runs the production schedule with
// skipped time: the destination never answers, the send is retried with
// jittered, growing waits for 24 hours, then the delivery is recorded as
// failed.
func TestTriggerWorkflowRetriesForADay(t *testing.T) {
	env, s := triggerEnv(t)
	start := env.Now()
	var attempts []time.Time
	env.OnActivity(s.SendTrigger, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in triggers.SendInput) error {
			attempts = append(attempts, env.Now())
			n := activity.GetInfo(ctx).Attempt
			return temporal.NewApplicationErrorWithOptions("destination answered 500 Internal Server Error",
				triggers.ErrTypeFailed, temporal.ApplicationErrorOptions{
					NextRetryDelay: in.Retry.Delay(n, 0.5),
				})
		})
	var reason string
	env.OnActivity(s.FailTrigger, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in triggers.FailInput) error {
			reason = in.Reason
			return nil
		}).Once()

	env.ExecuteWorkflow(workflows.TriggerWorkflow, workflows.TriggerInput{DeliveryID: 9})
	require.True(t, env.IsWorkflowCompleted())
	require.Error(t, env.GetWorkflowError())

	require.GreaterOrEqual(t, len(attempts), 25, "got %d attempts", len(attempts))
	span := attempts[len(attempts)-1].Sub(start)
	assert.Greater(t, span, 23*time.Hour, "got attempts over %s, want about a day", span)
	assert.LessOrEqual(t, span, 24*time.Hour)
	assert.Equal(t, 30*time.Second, attempts[1].Sub(attempts[0]), "the first wait is the initial interval")
	assert.Contains(t, reason, "gave up after retrying for 24h0m0s")
	assert.Contains(t, reason, "destination answered 500")
}

package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/ctmflow/ctmflow/logging"
	"github.com/ctmflow/ctmflow/triggers"
)

// sender is a nil receiver used only to name the delivery activities.
var sender *triggers.Sender

// DefaultTriggerSchedule retries a delivery for a day, waiting 30s after
// the first failure and at most an hour between attempts.
var DefaultTriggerSchedule = triggers.Schedule{
	Initial: 30 * time.Second,
	Max:     time.Hour,
	For:     24 * time.Hour,
}

// ErrTypeTriggerFailed fails a delivery workflow that gave up.
const ErrTypeTriggerFailed = "TriggerDeliveryFailed"

// TriggerInput starts a delivery's workflow. It names the delivery and
// its run, never what is sent: the payload holds PHI and is built inside
// the activity.
type TriggerInput struct {
	DeliveryID int64
	Run        int
	// Retry is the delivery's retry schedule; zero means
	// DefaultTriggerSchedule.
	Retry triggers.Schedule
}

// TriggerWorkflowID is the workflow id of a delivery's run, derived from
// the delivery's webhook id so that publishing an event twice starts one
// workflow. The webhook id is random, so two ctmflow databases sharing a
// Temporal namespace cannot collide as row ids would. A resend is a new
// run with an id of its own.
func TriggerWorkflowID(webhookID string, run int) string {
	if run == 0 {
		return "trigger-" + webhookID
	}
	return fmt.Sprintf("trigger-%s-resend-%d", webhookID, run)
}

// TriggerWorkflow delivers one lead event to one rule's destination:
//
//  1. SendTrigger POSTs the signed payload. Temporal retries it on the
//     schedule, for Retry.For; a destination's Retry-After and rate limit
//     set the next attempt's time.
//  2. If it never succeeds (retries ran out, the destination is gone, its
//     address is refused), FailTrigger records the delivery as failed,
//     and the workflow fails so that the UI lists it.
func TriggerWorkflow(ctx workflow.Context, in TriggerInput) error {
	if in.Retry.For <= 0 {
		in.Retry = DefaultTriggerSchedule
	}
	send := workflow.WithActivityOptions(ctx, sendOptions(in))
	sendIn := triggers.SendInput{DeliveryID: in.DeliveryID, Run: in.Run, Retry: in.Retry}
	err := workflow.ExecuteActivity(send, sender.SendTrigger, sendIn).Get(ctx, nil)
	if err == nil || temporal.IsCanceledError(err) {
		return err
	}

	reason := failureReason(err, in.Retry.For)
	record := workflow.WithActivityOptions(ctx, failOptions(in))
	failIn := triggers.FailInput{DeliveryID: in.DeliveryID, Run: in.Run, Reason: reason}
	if err := workflow.ExecuteActivity(record, sender.FailTrigger, failIn).Get(ctx, nil); err != nil {
		return err
	}
	workflow.GetLogger(ctx).Warn("trigger delivery failed", logging.KeyTriggerDeliveryID, in.DeliveryID)
	return temporal.NewNonRetryableApplicationError(reason, ErrTypeTriggerFailed, nil)
}

// failureReason says why a run gave up, from SendTrigger's last error.
func failureReason(err error, retried time.Duration) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.NonRetryable() {
		return appErr.Message()
	}
	reason := fmt.Sprintf("gave up after retrying for %s", retried)
	if appErr != nil {
		reason += "; last attempt: " + appErr.Message()
	}
	return reason
}

// maxSendAttempts bounds a run's attempts as well as its time: the
// schedule makes about thirty a day, and no destination should draw a
// thousand.
const maxSendAttempts = 1000

// sendOptions: the schedule comes from the input, so that a delivery
// keeps the schedule it started with; the jitter and Retry-After come
// from the activity's NextRetryDelay, and these intervals are only the
// fallback for a crashed or timed-out attempt.
func sendOptions(in TriggerInput) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout:    time.Minute,
		ScheduleToCloseTimeout: in.Retry.For,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    in.Retry.Initial,
			BackoffCoefficient: 2,
			MaximumInterval:    in.Retry.Max,
			MaximumAttempts:    maxSendAttempts,
			NonRetryableErrorTypes: []string{
				triggers.ErrTypeGone, triggers.ErrTypeRefused, triggers.ErrTypeBroken,
			},
		},
		Summary: fmt.Sprintf("send delivery %d", in.DeliveryID),
	}
}

// failOptions: recording the failure only writes to our database; it
// retries until that answers.
func failOptions(in TriggerInput) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
		},
		Summary: fmt.Sprintf("record delivery %d failed", in.DeliveryID),
	}
}

package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/ctmflow/ctmflow/activities"
)

// Each step's retry policy suits what it does. All of them only talk to
// our database today; the bounds say how long a failure may last before a
// person should look. limit (StepRetryTimeout, 0 for the default) caps
// every bound, so an operator can choose to hear about failures sooner.
//
// The summaries are the lines of the call's story in the Web UI's
// timeline: ids and kinds only, never a caller detail.

// heartbeatTimeout is how long a running step may go without a heartbeat
// before Temporal gives up on its worker and retries it elsewhere. Steps
// heartbeat only while they run longer than half of it (see
// activities.keepAlive), so a normal, quick step sends none.
const heartbeatTimeout = 10 * time.Second

// recordOptions: recording the call is on the latency path of every lead,
// so it runs as a local activity (no task queue round trip) and retries
// quickly. After five minutes of failure it parks for ops.
func recordOptions(d Delivery, limit time.Duration) workflow.LocalActivityOptions {
	opts := workflow.LocalActivityOptions{
		StartToCloseTimeout:    10 * time.Second,
		ScheduleToCloseTimeout: retryWindow(5*time.Minute, limit),
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    100 * time.Millisecond,
			BackoffCoefficient: 2,
			MaximumInterval:    10 * time.Second,
			NonRetryableErrorTypes: []string{
				activities.ErrTypePurged, activities.ErrTypeInvalid,
			},
		},
		Summary: fmt.Sprintf("record %s (delivery %d)", d.Kind, d.ID),
	}
	opts.StartToCloseTimeout = min(opts.StartToCloseTimeout, opts.ScheduleToCloseTimeout)
	return opts
}

// attachOptions: recordings and transcripts are not urgent; they retry
// patiently for an hour before parking.
func attachOptions(what string, d Delivery, limit time.Duration) workflow.ActivityOptions {
	return activityOptions(workflow.ActivityOptions{
		StartToCloseTimeout:    time.Minute,
		ScheduleToCloseTimeout: retryWindow(time.Hour, limit),
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        5 * time.Minute,
			NonRetryableErrorTypes: unreadable,
		},
		Summary: fmt.Sprintf("%s (delivery %d)", what, d.ID),
	})
}

// outcomeOptions: the outcome feeds reporting and star-rating triggers;
// it retries briskly and parks after an hour. A zero delivery means the
// end never came.
func outcomeOptions(d Delivery, limit time.Duration) workflow.ActivityOptions {
	summary := "no call end in time: mark the call end_missing"
	if d.ID != 0 {
		summary = fmt.Sprintf("record outcome (delivery %d)", d.ID)
	}
	return activityOptions(workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: retryWindow(time.Hour, limit),
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        500 * time.Millisecond,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			NonRetryableErrorTypes: unreadable,
		},
		Summary: summary,
	})
}

// quickOptions runs a step first as a local activity: inside the workflow
// task, with no task queue round trip and no extra history events beyond
// one marker. Its retries are brief — a quarter of the step's retry
// window, at most ten seconds — because a step that keeps failing is
// then run as a regular activity under opts, which heartbeats, can be
// paused, reset and retried from the Web UI, and parks for ops when it
// runs out.
func quickOptions(opts workflow.ActivityOptions) workflow.LocalActivityOptions {
	window := min(10*time.Second, opts.ScheduleToCloseTimeout/4)
	return workflow.LocalActivityOptions{
		StartToCloseTimeout:    min(5*time.Second, window),
		ScheduleToCloseTimeout: window,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        100 * time.Millisecond,
			BackoffCoefficient:     2,
			MaximumInterval:        2 * time.Second,
			NonRetryableErrorTypes: opts.RetryPolicy.NonRetryableErrorTypes,
		},
		Summary: opts.Summary,
	}
}

// unreadable are the errors of a delivery no retry can read.
var unreadable = []string{activities.ErrTypePurged, activities.ErrTypeInvalid}

// activityOptions adds what every (non-local) step shares: the heartbeat
// timeout, and an attempt no longer than the whole retry window.
func activityOptions(opts workflow.ActivityOptions) workflow.ActivityOptions {
	opts.HeartbeatTimeout = heartbeatTimeout
	opts.StartToCloseTimeout = min(opts.StartToCloseTimeout, opts.ScheduleToCloseTimeout)
	return opts
}

// retryWindow is a step's own retry bound, capped by the configured limit.
func retryWindow(own, limit time.Duration) time.Duration {
	if limit > 0 && limit < own {
		return limit
	}
	return own
}

// fetchOptions: asking CTM's API for a call whose end never came. CTM may
// be down or rate limiting (a 429's Retry-After sets the next attempt);
// it retries for an hour before parking. Refused keys park at once: only
// a person can fix them.
func fetchOptions(check int, limit time.Duration) workflow.ActivityOptions {
	return activityOptions(workflow.ActivityOptions{
		StartToCloseTimeout:    time.Minute,
		ScheduleToCloseTimeout: retryWindow(time.Hour, limit),
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    5 * time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    5 * time.Minute,
			NonRetryableErrorTypes: []string{
				activities.ErrTypeInvalid, activities.ErrTypeCTMUnauthorized,
				activities.ErrTypeCTMRefused,
			},
		},
		Summary: fmt.Sprintf("ask CTM's API for the call end (check %d)", check),
	})
}

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
// person should look.

// recordOptions: recording the call is on the latency path of every lead,
// so it runs as a local activity (no task queue round trip) and retries
// quickly. After five minutes of failure it parks for ops.
func recordOptions(d Delivery) workflow.LocalActivityOptions {
	return workflow.LocalActivityOptions{
		StartToCloseTimeout:    10 * time.Second,
		ScheduleToCloseTimeout: 5 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    100 * time.Millisecond,
			BackoffCoefficient: 2,
			MaximumInterval:    10 * time.Second,
			NonRetryableErrorTypes: []string{
				activities.ErrTypePurged, activities.ErrTypeInvalid,
			},
		},
		Summary: fmt.Sprintf("record %s delivery %d", d.Kind, d.ID),
	}
}

// attachOptions: recordings and transcripts are not urgent; they retry
// patiently for an hour before parking.
func attachOptions(what string, d Delivery) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout:    time.Minute,
		ScheduleToCloseTimeout: time.Hour,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    5 * time.Minute,
			NonRetryableErrorTypes: []string{
				activities.ErrTypePurged, activities.ErrTypeInvalid,
			},
		},
		Summary: fmt.Sprintf("%s from delivery %d", what, d.ID),
	}
}

// outcomeOptions: the outcome feeds reporting and star-rating triggers;
// it retries briskly and parks after an hour.
func outcomeOptions(d Delivery) workflow.ActivityOptions {
	summary := "mark the call's end missing"
	if d.ID != 0 {
		summary = fmt.Sprintf("record outcome from delivery %d", d.ID)
	}
	return workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: time.Hour,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    500 * time.Millisecond,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
			NonRetryableErrorTypes: []string{
				activities.ErrTypePurged, activities.ErrTypeInvalid,
			},
		},
		Summary: summary,
	}
}

// fetchOptions: asking CTM's API for a call whose end never came. CTM may
// be down or rate limiting (a 429's Retry-After sets the next attempt);
// it retries for an hour before parking. Refused keys park at once: only
// a person can fix them.
func fetchOptions(check int) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout:    time.Minute,
		ScheduleToCloseTimeout: time.Hour,
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
	}
}

package engine

import (
	"context"
	"errors"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/triggers"
	"github.com/ctmflow/ctmflow/workflows"
)

// TriggerStarter starts trigger delivery workflows: the seam between the
// triggers' publisher and Temporal.
type TriggerStarter struct {
	Client    client.Client
	TaskQueue string
	// Retry is the schedule new deliveries get.
	Retry triggers.Schedule
}

// StartDelivery starts the workflow of the delivery's current run. The id
// is derived from the delivery and the run, and a closed workflow's id is
// not reused: starting a run that exists, running or done, is a no-op.
// (Past the namespace's retention Temporal forgets the id; by then the
// delivery is no longer pending, and nothing starts it again.)
func (s *TriggerStarter) StartDelivery(ctx context.Context, d models.TriggerDelivery) error {
	opts := client.StartWorkflowOptions{
		ID:                    workflows.TriggerWorkflowID(d.WebhookID, d.Resends),
		TaskQueue:             s.TaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchLeadID.ValueSet(d.LeadID),
		),
		StaticSummary: fmt.Sprintf("trigger rule %d · %s event %d · lead %d",
			d.RuleID, d.EventType, d.EventID, d.LeadID),
		StaticDetails: triggerDetails,
		// In the worker process the first workflow task comes back in the
		// start's answer, skipping a trip through matching: a live
		// transfer is that much sooner. Elsewhere this is a plain start.
		EnableEagerStart: true,
	}
	in := workflows.TriggerInput{DeliveryID: d.ID, Run: d.Resends, Retry: s.Retry}
	_, err := s.Client.ExecuteWorkflow(ctx, opts, workflows.TriggerWorkflow, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if err != nil && !errors.As(err, &started) {
		return fmt.Errorf("starting workflow %s: %w", opts.ID, err)
	}
	return nil
}

const triggerDetails = `One lead event on its way to one trigger rule's destination.

The payload (the lead's name and number) is built and sent inside the
send activity; this history holds ids only. The delivery log is at
GET /api/deliveries; a failed delivery is resent with
POST /api/deliveries/{id}/resend or ` + "`ctmflow deliveries resend ID`" + `.`

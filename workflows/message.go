package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/ctmflow/ctmflow/activities"
)

// MessageWorkflow records one CTM text message: it attaches the message to
// the texter's lead, creating the lead for a new number, and appends the
// message.received event the triggers act on.
func MessageWorkflow(ctx workflow.Context, in MessageInput) error {
	var state State
	state.Stage = "received"
	if err := workflow.SetQueryHandler(ctx, QueryState, func() (State, error) { return state, nil }); err != nil {
		return err
	}
	ops := newOpsDesk(ctx, &state)
	defer ops.show(ctx)

	deliveries := workflow.GetSignalChannel(ctx, SignalDelivery)
	var d Delivery
	for deliveries.ReceiveAsync(&d) {
		state.Deliveries++
		dIn := activities.DeliveryInput{DeliveryID: d.ID, Kind: d.Kind}
		var rec activities.RecordMessageResult
		_, err := ops.step(ctx, "record message", func(ctx workflow.Context) error {
			ctx = workflow.WithLocalActivityOptions(ctx, recordOptions(d, in.StepRetryTimeout))
			return workflow.ExecuteLocalActivity(ctx, acts.RecordMessage, dIn).Get(ctx, &rec)
		})
		if err != nil {
			return err
		}
		if state.LeadID == 0 && rec.LeadID != 0 {
			state.LeadID = rec.LeadID
			state.Stage = "recorded"
			err := workflow.UpsertTypedSearchAttributes(ctx, SearchLeadID.ValueSet(rec.LeadID))
			if err != nil {
				return err
			}
		}
	}
	return nil
}

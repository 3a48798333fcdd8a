// Package engine is ctmflow's side of the Temporal connection: dialing the
// cluster, registering the search attributes the workflows use, and
// handing stored deliveries to their workflows with SignalWithStart.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/workflows"
)

// Options say where Temporal is.
type Options struct {
	// HostPort of the frontend. Default 127.0.0.1:7233.
	HostPort string
	// Namespace. Default "default".
	Namespace string
	// Logger receives the SDK's own log lines.
	Logger *slog.Logger
	// MetricsHandler, when set, receives the SDK's metrics.
	MetricsHandler client.MetricsHandler
	// Lazy connects on first use instead of at Dial, so that a process
	// whose promise does not depend on Temporal (the webhook receiver)
	// starts while Temporal is down.
	Lazy bool
}

// Dial connects to Temporal and checks that it answers.
func Dial(ctx context.Context, opts Options) (client.Client, error) {
	if opts.HostPort == "" {
		opts.HostPort = "127.0.0.1:7233"
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	copts := client.Options{
		HostPort:       opts.HostPort,
		Namespace:      opts.Namespace,
		Logger:         sdklog.NewStructuredLogger(logger),
		MetricsHandler: opts.MetricsHandler,
	}
	var c client.Client
	var err error
	if opts.Lazy {
		c, err = client.NewLazyClient(copts)
	} else {
		c, err = client.DialContext(ctx, copts)
	}
	if err != nil {
		return nil, fmt.Errorf("connecting to temporal at %s: %w", opts.HostPort, err)
	}
	return c, nil
}

// EnsureSearchAttributes registers, in the namespace, every search
// attribute the workflows use that is not registered yet. It is
// idempotent: `ctmflow migrate` and the dev server run it on every start.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	ops := c.OperatorService()
	have, err := ops.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{
		Namespace: namespace,
	})
	if err != nil {
		return fmt.Errorf("listing search attributes: %w", err)
	}

	missing := map[string]enumspb.IndexedValueType{}
	for _, key := range workflows.SearchAttributes() {
		if _, ok := have.GetCustomAttributes()[key.GetName()]; ok {
			continue
		}
		missing[key.GetName()] = key.GetValueType()
	}
	if len(missing) == 0 {
		return nil
	}

	_, err = ops.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        namespace,
		SearchAttributes: missing,
	})
	var exists *serviceerror.AlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("registering search attributes: %w", err)
	}
	return nil
}

// Dispatcher hands stored deliveries to their workflows. It is the one
// seam between the inbox and Temporal.
type Dispatcher struct {
	Client    client.Client
	TaskQueue string
	// EndTimeout is how long a new call workflow waits for the call's end.
	EndTimeout time.Duration
	// EndChecks and EndRecheck bound asking CTM's API for an end that
	// never came (see workflows.CallInput).
	EndChecks  int
	EndRecheck time.Duration
	// StepRetryTimeout is how long a new workflow's failing step retries
	// before it parks for ops.
	StepRetryTimeout time.Duration
}

// Dispatch signals the delivery's workflow, starting it if no run is
// open. A run that has already closed (a late update) gets a new run under
// the same id; the activities find the existing call and lead, so no
// second lead can appear.
func (d *Dispatcher) Dispatch(ctx context.Context, ref store.DeliveryRef) error {
	sig := workflows.Delivery{ID: ref.ID, Kind: ref.Kind}
	opts := client.StartWorkflowOptions{
		TaskQueue:             d.TaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchAccountID.ValueSet(ref.AccountID),
			workflows.SearchCallID.ValueSet(ref.CTMID),
		),
	}

	var err error
	if ref.Kind == models.KindTextMessage {
		opts.ID = workflows.MessageWorkflowID(ref.AccountID, ref.CTMID)
		opts.StaticSummary = fmt.Sprintf("CTM text message %d · account %d", ref.CTMID, ref.AccountID)
		opts.StaticDetails = messageDetails
		in := workflows.MessageInput{
			AccountID: ref.AccountID, MessageID: ref.CTMID,
			StepRetryTimeout: d.StepRetryTimeout,
		}
		_, err = d.Client.SignalWithStartWorkflow(ctx, opts.ID, workflows.SignalDelivery, sig,
			opts, workflows.MessageWorkflow, in)
	} else {
		opts.ID = workflows.CallWorkflowID(ref.AccountID, ref.CTMID)
		opts.StaticSummary = CallSummary(ref.AccountID, ref.CTMID, ref.Kind)
		opts.StaticDetails = callDetails
		in := workflows.CallInput{
			AccountID:        ref.AccountID,
			CallID:           ref.CTMID,
			EndTimeout:       d.EndTimeout,
			EndChecks:        d.EndChecks,
			EndRecheck:       d.EndRecheck,
			StepRetryTimeout: d.StepRetryTimeout,
			QuickSteps:       true,
		}
		_, err = d.Client.SignalWithStartWorkflow(ctx, opts.ID, workflows.SignalDelivery, sig,
			opts, workflows.CallWorkflow, in)
	}
	if err != nil {
		return fmt.Errorf("signalling workflow %s: %w", opts.ID, err)
	}
	return nil
}

// CallSummary is the static summary of a call's run, shown by the Web UI
// in the workflow's User Metadata. A late update's run says so by the
// webhook that started it.
func CallSummary(accountID, callID int64, kind string) string {
	return fmt.Sprintf("CTM call %d · account %d · run started by %s webhook", callID, accountID, kind)
}

// callDetails is the static details of every call run: a short guide for
// ops, in the markdown the Web UI renders.
const callDetails = `One CTM call, from its first webhook to its outcome. The lead and the
call live in the CRM database; this history holds ids only, never the
caller's number, name, recording or transcript.

**The story.** Step *record call* creates the lead and the call the
moment the first webhook arrives. A timer waits for the call-end
webhook. The end runs *attach recording*, *attach transcript* and
*record outcome* side by side. Without an end in time, *ask CTM for
the end* looks the call up in CTM's API: an ended call is applied as
its end webhook would have been, one in progress is waited for again,
and otherwise *mark end missing* runs. A webhook after the run closed
starts a short new run of the same workflow id.

**Where it is.** Current details and the ` + "`state`" + ` query: stage, lead,
what the call waits for, parked steps. Search attributes: CtmAccountId,
CtmCallId, CtmLeadId, CtmCallStage, CtmNeedsAttention, CtmTrackingSource.

**When a step fails.** It retries, then parks: CtmNeedsAttention turns
true and the current details say what failed. Fix the cause, then
signal ` + "`ops`" + ` (Send a Signal) with the input
` + "`{\"Action\": \"retry\"}`" + `, or give up on one step with
` + "`{\"Action\": \"skip\", \"Step\": \"attach transcript\"}`" + `.
Or run ` + "`ctmflow ops retry|skip`" + `. Activities can also be paused,
unpaused and reset from the pending activity.`

const messageDetails = `One CTM text message, attached to the texter's lead (created for a
new number). The message lives in the CRM database; this history holds
ids only.

A failed step parks like a call's: signal ` + "`ops`" + ` with
` + "`{\"Action\": \"retry\"}`" + ` or ` + "`{\"Action\": \"skip\"}`" + `, or run
` + "`ctmflow ops retry|skip`" + `.`

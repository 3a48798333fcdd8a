// Package workflows holds the durable processes of ctmflow: one workflow
// per CTM call, which creates the lead at once, waits for the call's end
// and then attaches what the end brought; and one per text message.
//
// Nothing in a workflow's history identifies a caller. Signals carry the
// id of a stored delivery, activities read the body from the database, and
// results are ids, stages and flags: phone numbers, names, transcripts and
// recording URLs never enter Temporal.
package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
)

// Names other processes use to talk to the workflows.
const (
	// SignalDelivery hands a stored CTM delivery to its workflow.
	SignalDelivery = "ctm-delivery"
	// SignalOps carries an ops decision for a parked step. Its payload is
	// an OpsDecision, e.g. {"Action": "retry"} or
	// {"Action": "skip", "Step": "attach transcript"}. Ops send it from
	// the Web UI's signal dialog or with `ctmflow ops retry|skip`.
	SignalOps = "ops"
	// QueryState returns the workflow's State.
	QueryState = "state"
)

// DefaultEndTimeout is how long a call waits for its end webhook when
// CallInput says nothing. Calls to treatment centres can run long; four
// hours covers all but the rarest.
const DefaultEndTimeout = 4 * time.Hour

// DefaultEndChecks is how many times a call whose end never came asks
// CTM's API, when CallInput says nothing.
const DefaultEndChecks = 4

// DefaultEndRecheck is how long a call waits again when CTM's API says it
// is still in progress, when CallInput says nothing.
const DefaultEndRecheck = time.Hour

// DefaultStepRetryTimeout is how long a failing step retries before it
// parks for ops, when the input says nothing. The first step, which
// creates the lead, parks sooner (see recordOptions): staff are waiting
// for that lead.
const DefaultStepRetryTimeout = time.Hour

// CallInput starts a call's workflow.
type CallInput struct {
	AccountID int64
	CallID    int64
	// EndTimeout bounds the wait for the call's end; 0 means
	// DefaultEndTimeout.
	EndTimeout time.Duration
	// EndChecks bounds how often CTM's API is asked for a call whose end
	// never came; 0 means DefaultEndChecks.
	EndChecks int
	// EndRecheck is the wait after CTM's API said the call is still in
	// progress; 0 means DefaultEndRecheck.
	EndRecheck time.Duration

	// StepRetryTimeout bounds how long a failing step retries before it
	// parks for ops; 0 means DefaultStepRetryTimeout.
	StepRetryTimeout time.Duration

	// QuickSteps runs each end step first as a local activity, and as a
	// regular activity only when that fails. Every run the dispatcher
	// starts sets it; runs begun before it existed (recorded histories)
	// lack it and replay as they ran. The input is the version gate here
	// because workflow.GetVersion would cost every call a marker and a
	// search attribute upsert.
	QuickSteps bool
}

// MessageInput starts a text message's workflow.
type MessageInput struct {
	AccountID int64
	MessageID int64
	// StepRetryTimeout is as in CallInput.
	StepRetryTimeout time.Duration
}

// Delivery is the SignalDelivery payload: a reference to a stored webhook,
// never its content.
type Delivery struct {
	ID   int64
	Kind string
}

// Ops actions for a parked step.
const (
	OpsRetry = "retry"
	OpsSkip  = "skip"
)

// OpsDecision is the SignalOps payload. An empty Step applies the action
// to every parked step.
type OpsDecision struct {
	Action string
	Step   string
}

// State is what QueryState returns: where the call is and what it waits
// for.
type State struct {
	Stage       string
	LeadID      int64
	CallRowID   int64
	WaitingFor  string
	EndDeadline time.Time
	Deliveries  int
	// EndChecks counts the times CTM's API was asked for the end.
	EndChecks int
	Parked    []ParkedStep
}

// ParkedStep is a step whose retries ran out, waiting for an ops decision.
type ParkedStep struct {
	Step  string
	Error string
	Since time.Time
}

// What a workflow can be waiting for.
const (
	WaitingForEnd = "call end"
	WaitingForOps = "ops decision"
)

// CallWorkflowID is the workflow id of a CTM call: one workflow per call,
// whatever order CTM's webhooks arrive in.
func CallWorkflowID(accountID, callID int64) string {
	return fmt.Sprintf("ctm-call-%d-%d", accountID, callID)
}

// MessageWorkflowID is the workflow id of a CTM text message.
func MessageWorkflowID(accountID, messageID int64) string {
	return fmt.Sprintf("ctm-message-%d-%d", accountID, messageID)
}

// Search attributes, registered by `ctmflow migrate` and the dev server.
// None holds PHI: ids, a stage, a flag and the marketing source.
var (
	SearchAccountID      = temporal.NewSearchAttributeKeyInt64("CtmAccountId")
	SearchCallID         = temporal.NewSearchAttributeKeyInt64("CtmCallId")
	SearchLeadID         = temporal.NewSearchAttributeKeyInt64("CtmLeadId")
	SearchStage          = temporal.NewSearchAttributeKeyKeyword("CtmCallStage")
	SearchNeedsAttention = temporal.NewSearchAttributeKeyBool("CtmNeedsAttention")
	SearchSource         = temporal.NewSearchAttributeKeyKeyword("CtmTrackingSource")
)

// SearchAttributes lists every search attribute the workflows use.
func SearchAttributes() []temporal.SearchAttributeKey {
	return []temporal.SearchAttributeKey{
		SearchAccountID, SearchCallID, SearchLeadID,
		SearchStage, SearchNeedsAttention, SearchSource,
	}
}

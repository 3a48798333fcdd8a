package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/ctmflow/ctmflow/workflows"
)

// What ops commands can run into, besides an unreachable Temporal.
var (
	ErrNoWorkflow    = errors.New("no such workflow")
	ErrNotRunning    = errors.New("workflow is not running")
	ErrNothingParked = errors.New("nothing parked")
)

// NeedsAttentionQuery is the visibility query of every open workflow
// with a parked step.
const NeedsAttentionQuery = "CtmNeedsAttention = true AND ExecutionStatus = 'Running'"

// stateTimeout bounds one state query. A query needs a worker to answer;
// without one it would wait for the caller's whole deadline.
const stateTimeout = 5 * time.Second

// ParkedCall is an open workflow that waits for an ops decision.
type ParkedCall struct {
	WorkflowID string
	RunID      string
	Started    time.Time
	// State is what the workflow's state query answered; StateErr says
	// why it did not (no worker polling, most often).
	State    workflows.State
	StateErr error
}

// ListParked lists up to limit open workflows that need attention, each
// with the parked steps its state query reports. Visibility lags the
// workflows by a moment: a step parked a second ago may be missing.
func ListParked(ctx context.Context, c client.Client, limit int) ([]ParkedCall, error) {
	var out []ParkedCall
	var token []byte
	for len(out) < limit {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query:         NeedsAttentionQuery,
			PageSize:      int32(min(limit-len(out), 100)),
			NextPageToken: token,
		})
		if err != nil {
			return nil, fmt.Errorf("listing workflows that need attention: %w", err)
		}
		for _, e := range resp.GetExecutions() {
			p := ParkedCall{
				WorkflowID: e.GetExecution().GetWorkflowId(),
				RunID:      e.GetExecution().GetRunId(),
				Started:    e.GetStartTime().AsTime(),
			}
			p.State, p.StateErr = queryState(ctx, c, p.WorkflowID, p.RunID)
			out = append(out, p)
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			break
		}
	}
	return out, nil
}

// Decide sends an ops decision to the open run of workflowID, after
// checking with its state query that a step it applies to is parked. It
// returns the steps the decision applies to. The workflow ignores a
// decision that no longer matches (a step that succeeded meanwhile), so
// the check is for the operator's sake, not the workflow's.
func Decide(
	ctx context.Context, c client.Client, workflowID string, dec workflows.OpsDecision,
) ([]workflows.ParkedStep, error) {
	desc, err := c.DescribeWorkflowExecution(ctx, workflowID, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return nil, fmt.Errorf("%w: %s", ErrNoWorkflow, workflowID)
	}
	if err != nil {
		return nil, fmt.Errorf("describing %s: %w", workflowID, err)
	}
	info := desc.GetWorkflowExecutionInfo()
	if status := info.GetStatus(); status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return nil, fmt.Errorf("%w: %s is %s", ErrNotRunning, workflowID, statusName(status))
	}
	runID := info.GetExecution().GetRunId()

	state, err := queryState(ctx, c, workflowID, runID)
	if err != nil {
		return nil, err
	}
	var parked []string
	var matched []workflows.ParkedStep
	for _, p := range state.Parked {
		parked = append(parked, p.Step)
		if dec.Step == "" || strings.EqualFold(dec.Step, p.Step) {
			matched = append(matched, p)
		}
	}
	switch {
	case len(parked) == 0:
		waiting := state.WaitingFor
		if waiting == "" {
			waiting = "nothing"
		}
		return nil, fmt.Errorf("%w on %s (stage %s, waiting for %s)",
			ErrNothingParked, workflowID, state.Stage, waiting)
	case len(matched) == 0:
		return nil, fmt.Errorf("%w: %s has no parked step %q (parked: %s)",
			ErrNothingParked, workflowID, dec.Step, strings.Join(parked, ", "))
	}

	if err := c.SignalWorkflow(ctx, workflowID, runID, workflows.SignalOps, dec); err != nil {
		return nil, fmt.Errorf("signalling %s: %w", workflowID, err)
	}
	return matched, nil
}

func queryState(ctx context.Context, c client.Client, workflowID, runID string) (workflows.State, error) {
	ctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	var s workflows.State
	v, err := c.QueryWorkflow(ctx, workflowID, runID, workflows.QueryState)
	if err != nil {
		return s, fmt.Errorf("querying the state of %s (is a worker running?): %w", workflowID, err)
	}
	if err := v.Get(&s); err != nil {
		return s, fmt.Errorf("decoding the state of %s: %w", workflowID, err)
	}
	return s, nil
}

// statusName is "completed" for WORKFLOW_EXECUTION_STATUS_COMPLETED.
func statusName(s enumspb.WorkflowExecutionStatus) string {
	return strings.ToLower(s.String())
}

package workflows

import (
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// namedStep is one step of a workflow, as ops see it.
type namedStep struct {
	name string
	run  func(workflow.Context) error
}

// opsDesk parks steps whose retries ran out and hands them the decision
// ops send. A parked step never fails the workflow silently: the workflow
// raises CtmNeedsAttention, says what failed in its current details and
// its state query, and waits for "retry" or "skip" on SignalOps.
type opsDesk struct {
	state  *State
	parked []*parkedStep
}

type parkedStep struct {
	ParkedStep
	action string
}

func newOpsDesk(ctx workflow.Context, state *State) *opsDesk {
	d := &opsDesk{state: state}
	decisions := workflow.GetSignalChannel(ctx, SignalOps)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var dec OpsDecision
			decisions.Receive(ctx, &dec)
			d.decide(ctx, dec)
		}
	})
	return d
}

// step runs fn until it succeeds or ops skip it. A cancelled workflow
// returns the cancellation instead of parking.
func (d *opsDesk) step(ctx workflow.Context, name string, fn func(workflow.Context) error) (skipped bool, err error) {
	for {
		err := fn(ctx)
		if err == nil {
			return false, nil
		}
		if temporal.IsCanceledError(err) || ctx.Err() != nil {
			return false, err
		}
		if d.park(ctx, name, err) == OpsSkip {
			return true, nil
		}
	}
}

// parallel runs steps side by side and waits for all of them.
func (d *opsDesk) parallel(ctx workflow.Context, steps []namedStep) error {
	wg := workflow.NewWaitGroup(ctx)
	var errs []error
	for _, s := range steps {
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			if _, err := d.step(ctx, s.name, s.run); err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait(ctx)
	return errors.Join(errs...)
}

func (d *opsDesk) park(ctx workflow.Context, name string, cause error) string {
	p := &parkedStep{ParkedStep: ParkedStep{
		Step:  name,
		Error: failureMessage(cause),
		Since: workflow.Now(ctx),
	}}
	d.parked = append(d.parked, p)
	d.sync()
	logger := workflow.GetLogger(ctx)
	logger.Warn("step parked for ops", "step", name, "error", p.Error)
	if len(d.parked) == 1 {
		d.attention(ctx, true)
	}
	d.show(ctx)

	_ = workflow.Await(ctx, func() bool { return p.action != "" })

	for i, q := range d.parked {
		if q == p {
			d.parked = append(d.parked[:i], d.parked[i+1:]...)
			break
		}
	}
	d.sync()
	if len(d.parked) == 0 {
		d.attention(ctx, false)
	}
	d.show(ctx)
	logger.Info("ops decided", "step", name, "action", p.action)
	return p.action
}

func (d *opsDesk) decide(ctx workflow.Context, dec OpsDecision) {
	logger := workflow.GetLogger(ctx)
	action := strings.ToLower(strings.TrimSpace(dec.Action))
	if action != OpsRetry && action != OpsSkip {
		logger.Warn("ignoring ops decision with unknown action", "action", dec.Action)
		return
	}
	matched := false
	for _, p := range d.parked {
		if dec.Step == "" || strings.EqualFold(dec.Step, p.Step) {
			p.action = action
			matched = true
		}
	}
	if !matched {
		logger.Warn("ops decision matched no parked step", "step", dec.Step)
	}
}

func (d *opsDesk) attention(ctx workflow.Context, on bool) {
	err := workflow.UpsertTypedSearchAttributes(ctx, SearchNeedsAttention.ValueSet(on))
	if err != nil {
		workflow.GetLogger(ctx).Error("updating needs-attention", "error", err)
	}
}

func (d *opsDesk) sync() {
	d.state.Parked = d.state.Parked[:0]
	for _, p := range d.parked {
		d.state.Parked = append(d.state.Parked, p.ParkedStep)
	}
	if len(d.parked) > 0 {
		d.state.WaitingFor = WaitingForOps
	} else if d.state.WaitingFor == WaitingForOps {
		d.state.WaitingFor = ""
	}
}

// show keeps the Web UI's "current details" telling where the workflow
// is, what it waits for and, when steps are parked, what failed and how
// to go on. Current details live in the worker, not in history: changing
// their wording needs no versioning.
func (d *opsDesk) show(ctx workflow.Context) {
	workflow.SetCurrentDetails(ctx, describe(d.state)+d.details(ctx))
}

// describe is the first line of the current details.
func describe(s *State) string {
	deliveries := "1 delivery"
	if s.Deliveries != 1 {
		deliveries = fmt.Sprintf("%d deliveries", s.Deliveries)
	}
	out := fmt.Sprintf("**Stage** %s · **lead** %d · %s", s.Stage, s.LeadID, deliveries)
	if s.WaitingFor == WaitingForEnd {
		out += fmt.Sprintf("\n\nWaiting for the call-end webhook until %s; "+
			"then CTM's API is asked for the call.", s.EndDeadline.UTC().Format(detailsTime))
	}
	switch {
	case s.EndChecks == 1:
		out += "\n\nCTM's API was asked for the end once."
	case s.EndChecks > 1:
		out += fmt.Sprintf("\n\nCTM's API was asked for the end %d times.", s.EndChecks)
	}
	return out
}

const detailsTime = "2006-01-02 15:04 UTC"

// details describes the parked steps for the UI, with the way out.
func (d *opsDesk) details(ctx workflow.Context) string {
	if len(d.parked) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n\n**Needs attention.** Waiting for an ops decision "+
		"on %d parked step(s):\n\n", len(d.parked))
	for _, p := range d.parked {
		fmt.Fprintf(&b, "- **%s**, since %s: %s\n", p.Step, p.Since.UTC().Format(detailsTime), p.Error)
	}
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	step := d.parked[0].Step
	fmt.Fprintf(&b, "\nFix the cause, then send the `%s` signal with `{\"Action\": \"retry\"}`, "+
		"or give up on one step with `{\"Action\": \"skip\", \"Step\": \"%s\"}`. "+
		"From a shell: `ctmflow ops retry %s` or `ctmflow ops skip %s --step \"%s\"`.",
		SignalOps, step, id, id, step)
	return b.String()
}

// failureMessage is the innermost message of an activity failure, which
// our activities keep free of caller details.
func failureMessage(err error) string {
	for next := errors.Unwrap(err); next != nil; next = errors.Unwrap(next) {
		err = next
	}
	msg := err.Error()
	// An application error's Error() appends its type and retryability,
	// which say nothing to ops.
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		msg = app.Message()
	}
	if len(msg) > 300 {
		msg = strings.ToValidUTF8(msg[:300], "") + "…"
	}
	return msg
}

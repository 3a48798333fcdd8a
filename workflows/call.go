package workflows

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/ctmflow/ctmflow/activities"
	"github.com/ctmflow/ctmflow/models"
)

// acts is a nil receiver used only to name activity methods.
var acts *activities.Activities

// CallWorkflow is the life of one CTM call. It reads top to bottom as the
// business process:
//
//  1. Every delivery is first recorded by a local activity, which creates
//     the lead and the call the moment the first webhook arrives, while
//     the phone still rings.
//  2. The workflow then waits for the call's end, up to EndTimeout.
//  3. A delivery that says the call ended runs the end steps side by side:
//     attach the recording, attach the transcript and summary, record the
//     outcome. Each appends its lead events (recording.ready, ...).
//  4. With the end recorded, the workflow completes. A later update (a
//     transcript, a star rating) starts a short new run under the same id,
//     which applies it to the same call and lead and completes at once.
//  5. If the end never comes in time, the workflow asks CTM's API for
//     the call. An ended call's data is applied as if its end webhook had
//     come; a call still in progress is waited for again, up to
//     EndChecks times; otherwise the call is marked end_missing.
//
// Deliveries may come in any order and any number of times; each step
// applies data by version, so the result is the same as a clean order.
func CallWorkflow(ctx workflow.Context, in CallInput) error {
	if in.EndTimeout <= 0 {
		in.EndTimeout = DefaultEndTimeout
	}
	if in.EndChecks <= 0 {
		in.EndChecks = DefaultEndChecks
	}
	if in.EndRecheck <= 0 {
		in.EndRecheck = DefaultEndRecheck
	}
	r := &callRun{in: in}
	r.state.Stage = "received"
	if err := workflow.SetQueryHandler(ctx, QueryState, r.query); err != nil {
		return err
	}
	r.ops = newOpsDesk(ctx, &r.state)
	// A closed run keeps its last details: make them its final state,
	// not the wait it was in.
	defer r.details(ctx)
	return r.run(ctx)
}

type callRun struct {
	in    CallInput
	state State
	ops   *opsDesk
	timer workflow.Future
	// recorded is set once the search attributes name the lead.
	recorded bool
	// published is the stage the search attributes show.
	published string
	// done means nothing is left to wait for in this run.
	done bool
}

func (r *callRun) run(ctx workflow.Context) error {
	deliveries := workflow.GetSignalChannel(ctx, SignalDelivery)
	timedOut := false
	for {
		// Handle everything already delivered before deciding to wait or
		// finish, so that no signal is left unread when the run closes.
		var d Delivery
		for deliveries.ReceiveAsync(&d) {
			if err := r.handle(ctx, d); err != nil {
				return err
			}
		}
		if r.done {
			return nil
		}
		if timedOut {
			timedOut = false
			if err := r.timedOut(ctx); err != nil {
				return err
			}
			continue
		}

		if r.timer == nil {
			r.state.EndDeadline = workflow.Now(ctx).Add(r.in.EndTimeout)
			r.timer = workflow.NewTimerWithOptions(ctx, r.in.EndTimeout, workflow.TimerOptions{
				Summary: "wait for the call end",
			})
		}
		r.state.WaitingFor = WaitingForEnd
		r.details(ctx)

		sel := workflow.NewSelector(ctx)
		sel.AddReceive(deliveries, func(workflow.ReceiveChannel, bool) {})
		sel.AddFuture(r.timer, func(workflow.Future) { timedOut = true })
		sel.Select(ctx)
		r.state.WaitingFor = ""
	}
}

// handle applies one delivery: record it, then run the steps it needs.
func (r *callRun) handle(ctx workflow.Context, d Delivery) error {
	r.state.Deliveries++
	in := activities.DeliveryInput{DeliveryID: d.ID, Kind: d.Kind}

	var rec activities.RecordCallResult
	skipped, err := r.ops.step(ctx, "record call", func(ctx workflow.Context) error {
		ctx = workflow.WithLocalActivityOptions(ctx, recordOptions(d, r.in.StepRetryTimeout))
		return workflow.ExecuteLocalActivity(ctx, acts.RecordCall, in).Get(ctx, &rec)
	})
	if err != nil || skipped {
		return err
	}
	r.state.LeadID, r.state.CallRowID = rec.LeadID, rec.CallRowID
	r.state.Stage = rec.Stage
	if rec.Finished {
		r.state.Stage = models.StageEnded
	}
	if err := r.publish(ctx, rec); err != nil {
		return err
	}

	if steps := r.endSteps(d, rec); len(steps) > 0 {
		if err := r.ops.parallel(ctx, steps); err != nil {
			return err
		}
	}

	// A call already ended, or given up on, by an earlier run has nothing
	// left to wait for: this run only applied a late delivery.
	if rec.Finished || rec.Stage != models.StageStarted {
		r.done = true
	}
	return nil
}

// endSteps lists the steps a delivery needs beyond recording the call.
func (r *callRun) endSteps(d Delivery, rec activities.RecordCallResult) []namedStep {
	in := activities.DeliveryInput{DeliveryID: d.ID, Kind: d.Kind}
	limit := r.in.StepRetryTimeout
	var steps []namedStep
	if rec.HasRecording {
		opts := attachOptions("attach recording", d, limit)
		steps = append(steps, r.endStep("attach recording", opts, acts.AttachRecording, in))
	}
	if rec.HasTranscript {
		opts := attachOptions("attach transcript and summary", d, limit)
		steps = append(steps, r.endStep("attach transcript", opts, acts.AttachTranscript, in))
	}
	if rec.Finished || rec.HasOutcome {
		out := activities.OutcomeInput{DeliveryInput: in, Ends: rec.Finished}
		steps = append(steps, r.endStep("record outcome", outcomeOptions(d, limit), acts.RecordOutcome, out))
	}
	return steps
}

// endStep runs an activity as a step: with QuickSteps, first as a local
// activity (see quickOptions), then, if that fails in a way a retry
// might mend, as a regular activity under opts.
func (r *callRun) endStep(name string, opts workflow.ActivityOptions, fn, arg any) namedStep {
	return namedStep{name, func(ctx workflow.Context) error {
		if r.in.QuickSteps {
			lctx := workflow.WithLocalActivityOptions(ctx, quickOptions(opts))
			err := workflow.ExecuteLocalActivity(lctx, fn, arg).Get(ctx, nil)
			if err == nil || !worthAnActivity(err) {
				return err
			}
			workflow.GetLogger(ctx).Warn("quick step failed; running it as an activity",
				"step", name, "error", failureMessage(err))
		}
		ctx = workflow.WithActivityOptions(ctx, opts)
		return workflow.ExecuteActivity(ctx, fn, arg).Get(ctx, nil)
	}}
}

// worthAnActivity says whether a failed quick step should run again as a
// regular activity: not when cancelled, and not when the failure is one
// no retry can mend (the step then parks at once).
func worthAnActivity(err error) bool {
	if temporal.IsCanceledError(err) {
		return false
	}
	var app *temporal.ApplicationError
	return !errors.As(err, &app) || !app.NonRetryable()
}

// endFromAPI names the change that made a timed-out call ask CTM's API.
// Runs that timed out before it marked the call end_missing at once, and
// must replay so.
const endFromAPI = "end-from-ctm-api"

// timedOut handles the end wait's expiry: it asks CTM's API for the call
// and applies what it says, waits again, or gives up. It leaves r.done
// set, or r.timer set to the next wait.
func (r *callRun) timedOut(ctx workflow.Context) error {
	if workflow.GetVersion(ctx, endFromAPI, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return r.giveUp(ctx)
	}

	r.state.EndChecks++
	ref := activities.CallRef{AccountID: r.in.AccountID, CallID: r.in.CallID}
	var res activities.FetchCallResult
	skipped, err := r.ops.step(ctx, "ask CTM for the end", func(ctx workflow.Context) error {
		ctx = workflow.WithActivityOptions(ctx, fetchOptions(r.state.EndChecks, r.in.StepRetryTimeout))
		return workflow.ExecuteActivity(ctx, acts.FetchCall, ref).Get(ctx, &res)
	})
	if err != nil {
		return err
	}
	logger := workflow.GetLogger(ctx)
	logger.Info("asked CTM's API for the call end", "answer", res.Status, "check", r.state.EndChecks)

	switch {
	case skipped:
	case res.Status == activities.CTMCallEnded:
		if err := r.handle(ctx, Delivery{ID: res.DeliveryID, Kind: models.KindCallEnd}); err != nil {
			return err
		}
		if r.done {
			return nil
		}
	case res.Status == activities.CTMCallInProgress && r.state.EndChecks < r.in.EndChecks:
		r.state.EndDeadline = workflow.Now(ctx).Add(r.in.EndRecheck)
		r.timer = workflow.NewTimerWithOptions(ctx, r.in.EndRecheck, workflow.TimerOptions{
			Summary: "wait again: CTM says the call is in progress",
		})
		return nil
	}
	return r.giveUp(ctx)
}

// giveUp marks the call end_missing; nothing is left to wait for.
func (r *callRun) giveUp(ctx workflow.Context) error {
	if err := r.endMissing(ctx); err != nil {
		return err
	}
	r.done = true
	return nil
}

func (r *callRun) endMissing(ctx workflow.Context) error {
	ref := activities.CallRef{AccountID: r.in.AccountID, CallID: r.in.CallID}
	_, err := r.ops.step(ctx, "mark end missing", func(ctx workflow.Context) error {
		ctx = workflow.WithActivityOptions(ctx, outcomeOptions(Delivery{}, r.in.StepRetryTimeout))
		return workflow.ExecuteActivity(ctx, acts.MarkEndMissing, ref).Get(ctx, nil)
	})
	if err != nil {
		return err
	}
	r.state.Stage = models.StageEndMissing
	r.published = models.StageEndMissing
	workflow.GetLogger(ctx).Info("call end never arrived", "timeout", r.in.EndTimeout.String())
	return r.search(ctx, SearchStage.ValueSet(models.StageEndMissing))
}

// publish brings the search attributes up to date in one upsert: each
// upsert is a history event, and events are what Temporal bills.
func (r *callRun) publish(ctx workflow.Context, rec activities.RecordCallResult) error {
	var updates []temporal.SearchAttributeUpdate
	if !r.recorded {
		r.recorded = true
		updates = append(updates, SearchLeadID.ValueSet(rec.LeadID))
		if rec.Source != "" {
			updates = append(updates, SearchSource.ValueSet(rec.Source))
		}
	}
	if r.state.Stage != r.published {
		r.published = r.state.Stage
		updates = append(updates, SearchStage.ValueSet(r.state.Stage))
	}
	if len(updates) == 0 {
		return nil
	}
	return r.search(ctx, updates...)
}

func (r *callRun) search(ctx workflow.Context, updates ...temporal.SearchAttributeUpdate) error {
	if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
		return fmt.Errorf("updating search attributes: %w", err)
	}
	return nil
}

// details keeps the UI's "current details" telling where the call is.
func (r *callRun) details(ctx workflow.Context) {
	r.ops.show(ctx)
}

func (r *callRun) query() (State, error) {
	return r.state, nil
}

// Package activities holds the steps the workflows run: each reads a
// stored CTM delivery, parses it and applies its part to the CRM. Every
// step is idempotent, so Temporal's retries, a replayed delivery or a
// repeated webhook change nothing twice.
//
// Inputs and results carry ids, stages and flags only. Errors are built
// so that no caller detail reaches the workflow history through them.
package activities

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/logging"
	"github.com/ctmflow/ctmflow/metrics"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
)

// EventPublisher hands newly recorded lead events to downstream triggers.
type EventPublisher interface {
	Publish(ctx context.Context, eventIDs []int64) error
}

// Activities holds the dependencies of every step.
type Activities struct {
	Store *store.Store
	// PhoneRegion reads numbers written without a country code.
	// Default ctm.DefaultRegion.
	PhoneRegion string
	// Events, when set, receives the ids of the lead events each step
	// appends.
	Events EventPublisher
	// Metrics, when set, is told how long a call took to be recorded.
	Metrics *metrics.Metrics
	// CTM asks CTM's REST API for calls whose end never came. Nil, or an
	// account without keys, leaves such calls end_missing.
	CTM *ctm.Client
}

// Error types the workflows and ops see; none is retried.
const (
	ErrTypePurged  = "DeliveryPurged"
	ErrTypeInvalid = "InvalidDelivery"
)

// DeliveryInput names the stored delivery a step applies.
type DeliveryInput struct {
	DeliveryID int64
	Kind       string
}

// RecordCallResult is what the workflow learns from recording a call:
// ids, the stage and which end-of-call steps the delivery needs.
type RecordCallResult struct {
	LeadID      int64
	CallRowID   int64
	LeadCreated bool
	// Stage is the call's stage before this delivery's outcome applies.
	Stage string
	// Finished says the delivery describes an ended call.
	Finished      bool
	HasRecording  bool
	HasTranscript bool
	HasOutcome    bool
	// Source is the marketing source, for the workflow's search
	// attributes.
	Source string
}

// RecordCall creates the lead and the call if they are new and applies the
// delivery's identity and attribution fields. It is the first step for
// every delivery, run as a local activity so the lead exists at once.
func (a *Activities) RecordCall(ctx context.Context, in DeliveryInput) (RecordCallResult, error) {
	d, err := a.load(ctx, in)
	if err != nil {
		return RecordCallResult{}, err
	}
	rec, err := a.Store.RecordCall(ctx, d)
	if err != nil {
		return RecordCallResult{}, err
	}
	if rec.CallCreated {
		a.Metrics.ObserveCallRecorded(d.Kind, time.Since(d.ReceivedAt))
	}
	a.publish(ctx, rec.EventIDs)

	c := d.Call
	return RecordCallResult{
		LeadID:        rec.LeadID,
		CallRowID:     rec.CallID,
		LeadCreated:   rec.LeadCreated,
		Stage:         rec.Stage,
		Finished:      d.Kind == models.KindCallEnd || c.Finished(),
		HasRecording:  c.Audio != "",
		HasTranscript: c.TranscriptionText != "" || c.Summary != "",
		HasOutcome:    hasOutcome(c),
		Source:        c.Source,
	}, nil
}

func hasOutcome(c *ctm.Call) bool {
	return c.CallStatus != "" || c.Duration > 0 ||
		c.Agent != (ctm.Agent{}) || c.Sale != nil || len(c.Tags) > 0 ||
		c.Notes != "" || len(c.CustomFields) > 0
}

// AttachRecording stores the call's recording link.
func (a *Activities) AttachRecording(ctx context.Context, in DeliveryInput) error {
	return a.step(ctx, in, a.Store.AttachRecording)
}

// AttachTranscript stores the call's transcript and AI summary.
func (a *Activities) AttachTranscript(ctx context.Context, in DeliveryInput) error {
	return a.step(ctx, in, a.Store.AttachTranscript)
}

// OutcomeInput names the delivery whose outcome to record.
type OutcomeInput struct {
	DeliveryInput
	// Ends moves the call to the ended stage.
	Ends bool
}

// RecordOutcome stores status, durations, agent, star rating and tags.
func (a *Activities) RecordOutcome(ctx context.Context, in OutcomeInput) error {
	return a.step(ctx, in.DeliveryInput, func(ctx context.Context, d store.CallDelivery) (store.StepResult, error) {
		return a.Store.RecordOutcome(ctx, d, in.Ends)
	})
}

// CallRef names a call by its CTM ids.
type CallRef struct {
	AccountID int64
	CallID    int64
}

// MarkEndMissing records that the call's end never came in time.
func (a *Activities) MarkEndMissing(ctx context.Context, ref CallRef) error {
	defer keepAlive(ctx)()
	res, err := a.Store.MarkEndMissing(ctx, ref.AccountID, ref.CallID)
	if err != nil {
		return err
	}
	a.publish(ctx, res.EventIDs)
	return nil
}

// RecordMessageResult is what the workflow learns from recording a text.
type RecordMessageResult struct {
	LeadID      int64
	MessageID   int64
	LeadCreated bool
}

// RecordMessage attaches a text message to its lead.
func (a *Activities) RecordMessage(ctx context.Context, in DeliveryInput) (RecordMessageResult, error) {
	d, err := a.load(ctx, in)
	if err != nil {
		return RecordMessageResult{}, err
	}
	rec, err := a.Store.RecordMessage(ctx, store.MessageDelivery{
		DeliveryID: d.DeliveryID,
		Message:    d.Call,
		Phone:      d.Phone,
	})
	if err != nil {
		return RecordMessageResult{}, err
	}
	a.publish(ctx, rec.EventIDs)
	return RecordMessageResult{
		LeadID:      rec.LeadID,
		MessageID:   rec.MessageID,
		LeadCreated: rec.LeadCreated,
	}, nil
}

func (a *Activities) step(
	ctx context.Context,
	in DeliveryInput,
	apply func(context.Context, store.CallDelivery) (store.StepResult, error),
) error {
	defer keepAlive(ctx)()
	d, err := a.load(ctx, in)
	if err != nil {
		return err
	}
	res, err := apply(ctx, d)
	if err != nil {
		return err
	}
	a.publish(ctx, res.EventIDs)
	return nil
}

// load reads and parses a stored delivery.
func (a *Activities) load(ctx context.Context, in DeliveryInput) (store.CallDelivery, error) {
	stored, err := a.Store.GetDelivery(ctx, in.DeliveryID)
	switch {
	case errors.Is(err, store.ErrPurged):
		return store.CallDelivery{}, temporal.NewNonRetryableApplicationError(
			"delivery body purged after retention; replaying needs CTM's copy", ErrTypePurged, nil)
	case errors.Is(err, store.ErrNotFound):
		return store.CallDelivery{}, temporal.NewNonRetryableApplicationError(
			"delivery not found", ErrTypeInvalid, nil)
	case err != nil:
		return store.CallDelivery{}, err
	}

	c, err := ctm.Parse(stored.Body)
	if err != nil {
		// The webhook parsed it before storing; this is corruption.
		return store.CallDelivery{}, temporal.NewNonRetryableApplicationError(
			"stored delivery does not parse", ErrTypeInvalid, nil)
	}
	if c.AccountID == 0 {
		c.AccountID = stored.AccountID
	}

	region := a.PhoneRegion
	if region == "" {
		region = ctm.DefaultRegion
	}
	// An unreadable or withheld number leaves the lead unmatched rather
	// than failing the step.
	phone, _ := ctm.NormalizePhone(c.CallerNumber, region)

	sent, err := ctm.ParseTime(stored.CTMTime)
	if err != nil {
		sent = stored.ReceivedAt
	}
	return store.CallDelivery{
		DeliveryID: stored.ID,
		Kind:       stored.Kind,
		Version:    store.Version(stored.Kind, sent),
		Call:       c,
		Phone:      phone,
		ReceivedAt: stored.ReceivedAt,
	}, nil
}

// publishTimeout bounds a publisher that works inside the step (for the
// call's first step, a local activity): a slow Temporal must not hold the
// call's workflow up. The worker's publisher returns at once.
const publishTimeout = 3 * time.Second

// publish hands events to the triggers. A failure there must not undo or
// repeat the step: the events are stored, and the triggers' sweeper
// publishes what this fast path could not.
func (a *Activities) publish(ctx context.Context, ids []int64) {
	if a.Events == nil || len(ids) == 0 {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	err := a.Events.Publish(pctx, ids)
	if err != nil && activity.IsActivity(ctx) {
		activity.GetLogger(ctx).Warn("publishing lead events failed; the sweeper will retry",
			logging.KeyCount, len(ids), logging.KeyError, err)
	}
}

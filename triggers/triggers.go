// Package triggers sends lead events to the CRM's automations: a
// live-transfer dialer that must ring while the caller is on the line, a
// partner that buys only well-rated leads, a text-message follow-up.
//
// The path of an event:
//
//  1. The store appends a lead event in the same transaction as the data
//     it describes. The activity that committed it calls Publish.
//  2. Publish matches the event against the enabled rules and records one
//     delivery per match, marking the event published in the same
//     transaction. It then starts one delivery workflow per delivery,
//     under an id derived from the delivery, so a repeat is a no-op.
//  3. A sweeper in the worker process publishes what step 1 or 2 left
//     undone: a publish that failed, a process that died after a commit.
//     No committed event is lost.
//  4. The delivery workflow runs SendTrigger, which builds the payload
//     from the database, signs it (Standard Webhooks) and POSTs it through
//     the SSRF guard, retried by Temporal with jitter for a day.
//
// The workflow's history holds ids only. The payload, with the lead's
// name and number, exists inside SendTrigger and on the wire, never in
// Temporal and never in a log line.
package triggers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
)

// Events lists the lead event types a rule may name.
var Events = []string{
	models.EventLeadCreated,
	models.EventCallStarted,
	models.EventCallEnded,
	models.EventCallEndMissing,
	models.EventRecordingReady,
	models.EventTranscriptReady,
	models.EventCallScored,
	models.EventMessageReceived,
	models.EventMessageSent,
	models.EventLeadStaffUpdated,
}

// Directions lists the directions a rule may require, as CTM spells them.
var Directions = []string{
	"inbound", "outbound", ctm.DirectionMsgInbound, ctm.DirectionMsgOutbound, "form", "chat",
}

// DedupeKey says which deliveries of one rule are the same. A call.scored
// rule fires once per call, whatever ratings follow: a partner buys a
// lead once. Every other rule fires once per event.
func DedupeKey(ev *models.LeadEvent) string {
	if ev.Type == models.EventCallScored && ev.CallID != nil {
		return fmt.Sprintf("call:%d", *ev.CallID)
	}
	return fmt.Sprintf("event:%d", ev.ID)
}

// Match says whether the rule fires for the event. firstContact is asked
// only when the rule cares whether the lead is new.
func Match(r *models.TriggerRule, f *store.EventFacts, firstContact func() (bool, error)) (bool, error) {
	if !r.Enabled() || r.Event != f.Event.Type || f.Event.ID <= r.AfterEventID {
		return false, nil
	}
	c := r.Conditions

	if c.MinStarRating != nil {
		rating, ok := starRating(f)
		if !ok || rating < *c.MinStarRating {
			return false, nil
		}
	}
	if c.Direction != "" && !strings.EqualFold(c.Direction, direction(f)) {
		return false, nil
	}
	if len(c.Sources) > 0 && !anyFold(c.Sources, sources(f)) {
		return false, nil
	}
	if len(c.Tags) > 0 && (f.Call == nil || !anyFold(c.Tags, f.Call.Tags)) {
		return false, nil
	}
	if c.FirstTimeCaller != nil {
		first, err := isFirstContact(f, firstContact)
		if err != nil {
			return false, err
		}
		if first != *c.FirstTimeCaller {
			return false, nil
		}
	}
	return true, nil
}

// starRating is the rating a call.scored event carries, else the call's
// current one.
func starRating(f *store.EventFacts) (int, bool) {
	if f.Event.Type == models.EventCallScored {
		// JSON numbers come back from the timeline as float64.
		if v, ok := f.Event.Data["star_rating"].(float64); ok {
			return int(v), true
		}
	}
	if f.Call != nil && f.Call.StarRating != nil {
		return *f.Call.StarRating, true
	}
	return 0, false
}

func direction(f *store.EventFacts) string {
	switch {
	case f.Call != nil:
		return f.Call.Direction
	case f.Message != nil:
		return f.Message.Direction
	}
	return ""
}

// sources are the attribution values a sources condition compares: the
// call's tracking source and label, else the lead's first-touch source.
func sources(f *store.EventFacts) []string {
	if f.Call != nil {
		return []string{f.Call.Source, f.Call.TrackingLabel}
	}
	return []string{f.Lead.Source}
}

func isFirstContact(f *store.EventFacts, ask func() (bool, error)) (bool, error) {
	if f.Event.Type == models.EventLeadCreated {
		return true, nil
	}
	// CTM knows callers from before ctmflow did: when it says the number
	// called before, it did. When it says new, our own timeline may still
	// know better.
	if f.Call != nil && f.Call.IsNewCaller != nil && !*f.Call.IsNewCaller {
		return false, nil
	}
	return ask()
}

// anyFold says whether some want equals some have, ignoring case.
func anyFold(want, have []string) bool {
	return slices.ContainsFunc(want, func(w string) bool {
		return slices.ContainsFunc(have, func(h string) bool {
			return h != "" && strings.EqualFold(strings.TrimSpace(w), strings.TrimSpace(h))
		})
	})
}

// matchAll returns the deliveries the rules want for the events.
func matchAll(ctx context.Context, st *store.Store, rules []models.TriggerRule,
	facts []store.EventFacts) ([]models.TriggerDelivery, error) {
	var out []models.TriggerDelivery
	for i := range facts {
		f := &facts[i]
		ask := func() (bool, error) { return st.FirstContact(ctx, f) }
		for j := range rules {
			r := &rules[j]
			ok, err := Match(r, f, ask)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, store.NewTriggerDelivery(r, &f.Event, DedupeKey(&f.Event)))
			}
		}
	}
	return out, nil
}

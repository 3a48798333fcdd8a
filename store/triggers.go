package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/ctmflow/ctmflow/models"
)

// ErrBusy means a trigger delivery is still being attempted, so it cannot
// be resent yet.
var ErrBusy = errors.New("delivery still in progress")

// CreateRule stores a new trigger rule. The rule fires for events
// recorded from now on: AfterEventID is set to the newest event.
func (s *Store) CreateRule(ctx context.Context, r *models.TriggerRule) error {
	err := s.transaction(ctx, func(tx *gorm.DB) error {
		var newest *int64
		if err := tx.Model(&models.LeadEvent{}).Select("MAX(id)").Scan(&newest).Error; err != nil {
			return err
		}
		if newest != nil {
			r.AfterEventID = *newest
		}
		now := s.now()
		r.CreatedAt, r.UpdatedAt = now, now
		return tx.Create(r).Error
	})
	if err != nil {
		return fmt.Errorf("creating trigger rule: %w", err)
	}
	return nil
}

// RuleFilter narrows ListRules.
type RuleFilter struct {
	// Event keeps the rules of one event type; empty keeps all.
	Event string
	// EnabledOnly leaves out disabled rules.
	EnabledOnly bool
}

// ListRules returns trigger rules, oldest first.
func (s *Store) ListRules(ctx context.Context, f RuleFilter) ([]models.TriggerRule, error) {
	q := s.db.WithContext(ctx).Order("id")
	if f.Event != "" {
		q = q.Where("event = ?", f.Event)
	}
	if f.EnabledOnly {
		q = q.Where("disabled_at IS NULL")
	}
	var out []models.TriggerRule
	if err := q.Find(&out).Error; err != nil {
		return nil, fmt.Errorf("listing trigger rules: %w", mapErr(err))
	}
	return out, nil
}

// GetRule returns one trigger rule.
func (s *Store) GetRule(ctx context.Context, id int64) (*models.TriggerRule, error) {
	var r models.TriggerRule
	if err := s.db.WithContext(ctx).Take(&r, id).Error; err != nil {
		return nil, fmt.Errorf("loading trigger rule %d: %w", id, mapErr(err))
	}
	return &r, nil
}

// UpdateRule applies change to the rule under a lock and saves it, unless
// change fails. Two edits of one rule cannot overwrite each other.
func (s *Store) UpdateRule(ctx context.Context, id int64,
	change func(*models.TriggerRule) error) (*models.TriggerRule, error) {
	var r models.TriggerRule
	err := s.transaction(ctx, func(tx *gorm.DB) error {
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Take(&r, id).Error; err != nil {
			return err
		}
		if err := change(&r); err != nil {
			return err
		}
		r.UpdatedAt = s.now()
		return tx.Select("*").Updates(&r).Error
	})
	if err != nil {
		return nil, fmt.Errorf("updating trigger rule %d: %w", id, err)
	}
	return &r, nil
}

// DeleteRule removes a rule. Its deliveries stay in the log; those not
// sent yet are skipped.
func (s *Store) DeleteRule(ctx context.Context, id int64) error {
	res := s.db.WithContext(ctx).Delete(&models.TriggerRule{}, id)
	if res.Error != nil {
		return fmt.Errorf("deleting trigger rule %d: %w", id, mapErr(res.Error))
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("deleting trigger rule %d: %w", id, ErrNotFound)
	}
	return nil
}

// DisableRule stops a rule firing, saying why. A rule already disabled
// keeps its first reason.
func (s *Store) DisableRule(ctx context.Context, id int64, reason string) error {
	now := s.now()
	err := s.db.WithContext(ctx).Model(&models.TriggerRule{}).
		Where("id = ? AND disabled_at IS NULL", id).
		Updates(map[string]any{"disabled_at": now, "disabled_reason": reason, "updated_at": now}).Error
	if err != nil {
		return fmt.Errorf("disabling trigger rule %d: %w", id, mapErr(err))
	}
	return nil
}

// EventFacts is a lead event with what trigger conditions and payloads
// read: its lead, and its call or message when it has one.
type EventFacts struct {
	Event   models.LeadEvent
	Lead    models.Lead
	Call    *models.Call
	Message *models.Message
}

// UnpublishedEventFacts returns the events among ids that are not
// published yet, and the ids of those events. Only the events whose type
// is in types come with their facts: the others interest no rule and
// need no more reading. An event whose lead is gone has no facts but is
// among the ids, so that publishing it retires it.
func (s *Store) UnpublishedEventFacts(ctx context.Context, ids []int64,
	types map[string]bool) ([]EventFacts, []int64, error) {
	if len(ids) == 0 {
		return nil, nil, nil
	}
	var events []models.LeadEvent
	err := s.db.WithContext(ctx).
		Where("id IN ? AND published_at IS NULL", ids).
		Order("id").Find(&events).Error
	if err != nil {
		return nil, nil, fmt.Errorf("loading lead events: %w", mapErr(err))
	}
	unpublished := make([]int64, len(events))
	wanted := events[:0:0]
	for i, ev := range events {
		unpublished[i] = ev.ID
		if types[ev.Type] {
			wanted = append(wanted, ev)
		}
	}
	if len(wanted) == 0 {
		return nil, unpublished, nil
	}
	facts, err := s.factsOf(ctx, wanted)
	if err != nil {
		return nil, nil, err
	}
	return facts, unpublished, nil
}

// GetEventFacts returns one event with its facts.
func (s *Store) GetEventFacts(ctx context.Context, eventID int64) (*EventFacts, error) {
	var ev models.LeadEvent
	if err := s.db.WithContext(ctx).Take(&ev, eventID).Error; err != nil {
		return nil, fmt.Errorf("loading lead event %d: %w", eventID, mapErr(err))
	}
	facts, err := s.factsOf(ctx, []models.LeadEvent{ev})
	if err != nil {
		return nil, err
	}
	if len(facts) == 0 {
		return nil, fmt.Errorf("loading lead %d: %w", ev.LeadID, ErrNotFound)
	}
	return &facts[0], nil
}

// factsOf loads the leads, calls and messages of events, one query each.
// An event whose lead is gone is left out.
func (s *Store) factsOf(ctx context.Context, events []models.LeadEvent) ([]EventFacts, error) {
	var leadIDs, callIDs, msgIDs []int64
	for _, ev := range events {
		leadIDs = append(leadIDs, ev.LeadID)
		if ev.CallID != nil {
			callIDs = append(callIDs, *ev.CallID)
		}
		if ev.MessageID != nil {
			msgIDs = append(msgIDs, *ev.MessageID)
		}
	}
	db := s.db.WithContext(ctx)

	var leads []models.Lead
	if err := db.Where("id IN ?", leadIDs).Find(&leads).Error; err != nil {
		return nil, fmt.Errorf("loading leads of events: %w", mapErr(err))
	}
	var calls []models.Call
	if len(callIDs) > 0 {
		if err := db.Where("id IN ?", callIDs).Find(&calls).Error; err != nil {
			return nil, fmt.Errorf("loading calls of events: %w", mapErr(err))
		}
	}
	var msgs []models.Message
	if len(msgIDs) > 0 {
		if err := db.Where("id IN ?", msgIDs).Find(&msgs).Error; err != nil {
			return nil, fmt.Errorf("loading messages of events: %w", mapErr(err))
		}
	}

	leadByID := map[int64]models.Lead{}
	for _, l := range leads {
		leadByID[l.ID] = l
	}
	callByID := map[int64]*models.Call{}
	for i := range calls {
		callByID[calls[i].ID] = &calls[i]
	}
	msgByID := map[int64]*models.Message{}
	for i := range msgs {
		msgByID[msgs[i].ID] = &msgs[i]
	}

	out := make([]EventFacts, 0, len(events))
	for _, ev := range events {
		lead, ok := leadByID[ev.LeadID]
		if !ok {
			continue
		}
		f := EventFacts{Event: ev, Lead: lead}
		if ev.CallID != nil {
			f.Call = callByID[*ev.CallID]
		}
		if ev.MessageID != nil {
			f.Message = msgByID[*ev.MessageID]
		}
		out = append(out, f)
	}
	return out, nil
}

// FirstContact says whether the event's call or message is the lead's
// first: no call, and no earlier message, came before it.
func (s *Store) FirstContact(ctx context.Context, f *EventFacts) (bool, error) {
	db := s.db.WithContext(ctx)
	var calls, msgs int64
	switch {
	case f.Call != nil:
		err := db.Model(&models.Call{}).Where("lead_id = ? AND id < ?", f.Lead.ID, f.Call.ID).Count(&calls).Error
		if err != nil {
			return false, fmt.Errorf("counting earlier calls: %w", mapErr(err))
		}
	case f.Message != nil:
		err := db.Model(&models.Call{}).Where("lead_id = ?", f.Lead.ID).Count(&calls).Error
		if err != nil {
			return false, fmt.Errorf("counting earlier calls: %w", mapErr(err))
		}
		err = db.Model(&models.Message{}).Where("lead_id = ? AND id < ?", f.Lead.ID, f.Message.ID).Count(&msgs).Error
		if err != nil {
			return false, fmt.Errorf("counting earlier messages: %w", mapErr(err))
		}
	}
	return calls == 0 && msgs == 0, nil
}

// UnpublishedEvents returns the ids of events recorded before before and
// not published yet, oldest first.
func (s *Store) UnpublishedEvents(ctx context.Context, before time.Time, limit int) ([]int64, error) {
	var ids []int64
	err := s.db.WithContext(ctx).Model(&models.LeadEvent{}).
		Where("published_at IS NULL AND created_at < ?", before).
		Order("id").Limit(limit).Pluck("id", &ids).Error
	if err != nil {
		return nil, fmt.Errorf("finding unpublished events: %w", mapErr(err))
	}
	return ids, nil
}

// NewTriggerDelivery returns a pending delivery of ev to rule; key tells
// apart the deliveries the rule may get (see models.TriggerDelivery).
func NewTriggerDelivery(rule *models.TriggerRule, ev *models.LeadEvent, key string) models.TriggerDelivery {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return models.TriggerDelivery{
		RuleID:    rule.ID,
		DedupeKey: key,
		WebhookID: "msg_" + hex.EncodeToString(b),
		EventID:   ev.ID,
		EventType: ev.Type,
		LeadID:    ev.LeadID,
		Status:    models.TriggerPending,
	}
}

// FanOut records the deliveries planned for the events and marks the
// events published, in one transaction: an event is published exactly
// when its deliveries exist. A delivery whose key is taken already is not
// recorded twice. It returns the deliveries whose workflow still has to
// be started: the new ones, and older ones a crash left unstarted.
func (s *Store) FanOut(ctx context.Context, eventIDs []int64,
	planned []models.TriggerDelivery) ([]models.TriggerDelivery, error) {
	var start []models.TriggerDelivery
	err := s.transaction(ctx, func(tx *gorm.DB) error {
		now := s.now()
		for _, d := range planned {
			d.CreatedAt, d.UpdatedAt = now, now
			if err := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&d).Error; err != nil {
				return err
			}
			var row models.TriggerDelivery
			err := tx.Where("rule_id = ? AND dedupe_key = ?", d.RuleID, d.DedupeKey).Take(&row).Error
			if err != nil {
				return err
			}
			if row.Status == models.TriggerPending && row.DispatchedAt == nil {
				start = append(start, row)
			}
		}
		if len(eventIDs) == 0 {
			return nil
		}
		return tx.Model(&models.LeadEvent{}).
			Where("id IN ? AND published_at IS NULL", eventIDs).
			Update("published_at", now).Error
	})
	if err != nil {
		return nil, fmt.Errorf("fanning out lead events: %w", err)
	}
	return start, nil
}

// UndispatchedDeliveries returns deliveries whose current run was due to
// start before before and has not: the process that recorded them died,
// or Temporal was unreachable.
func (s *Store) UndispatchedDeliveries(ctx context.Context, before time.Time,
	limit int) ([]models.TriggerDelivery, error) {
	var out []models.TriggerDelivery
	err := s.db.WithContext(ctx).
		Where("status = ? AND dispatched_at IS NULL AND updated_at < ?", models.TriggerPending, before).
		Order("id").Limit(limit).Find(&out).Error
	if err != nil {
		return nil, fmt.Errorf("finding undispatched deliveries: %w", mapErr(err))
	}
	return out, nil
}

// MarkTriggerDispatched records that run's workflow has started.
func (s *Store) MarkTriggerDispatched(ctx context.Context, id int64, run int) error {
	err := s.db.WithContext(ctx).Model(&models.TriggerDelivery{}).
		Where("id = ? AND resends = ? AND dispatched_at IS NULL", id, run).
		Update("dispatched_at", s.now()).Error
	if err != nil {
		return fmt.Errorf("marking delivery %d dispatched: %w", id, mapErr(err))
	}
	return nil
}

// GetTriggerDelivery returns one delivery.
func (s *Store) GetTriggerDelivery(ctx context.Context, id int64) (*models.TriggerDelivery, error) {
	var d models.TriggerDelivery
	if err := s.db.WithContext(ctx).Take(&d, id).Error; err != nil {
		return nil, fmt.Errorf("loading trigger delivery %d: %w", id, mapErr(err))
	}
	return &d, nil
}

// TriggerDeliveryFilter narrows ListTriggerDeliveries.
type TriggerDeliveryFilter struct {
	RuleID int64
	LeadID int64
	// Status keeps one state; empty keeps all.
	Status string
	// AfterID pages: only deliveries with a smaller id (newest first).
	AfterID int64
	// Limit caps the page; 0 means 50.
	Limit int
}

// ListTriggerDeliveries returns deliveries newest first.
func (s *Store) ListTriggerDeliveries(ctx context.Context, f TriggerDeliveryFilter) ([]models.TriggerDelivery, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	q := s.db.WithContext(ctx).Order("id DESC").Limit(f.Limit)
	if f.RuleID != 0 {
		q = q.Where("rule_id = ?", f.RuleID)
	}
	if f.LeadID != 0 {
		q = q.Where("lead_id = ?", f.LeadID)
	}
	if f.Status != "" {
		q = q.Where("status = ?", f.Status)
	}
	if f.AfterID > 0 {
		q = q.Where("id < ?", f.AfterID)
	}
	var out []models.TriggerDelivery
	if err := q.Find(&out).Error; err != nil {
		return nil, fmt.Errorf("listing trigger deliveries: %w", mapErr(err))
	}
	return out, nil
}

// TriggerAttempt is the outcome of one request to a destination.
type TriggerAttempt struct {
	// StatusCode is the destination's answer; 0 when none came.
	StatusCode int
	// Err says why the attempt failed; it must hold no PHI.
	Err string
	// Status is the delivery's state after the attempt.
	Status string
}

// RecordTriggerAttempt notes an attempt of run. A stale run (the delivery
// was resent meanwhile) changes nothing. A final state stays final: an
// attempt that outlived its run's deadline (the run gave up meanwhile)
// is counted, but only a success changes the state.
func (s *Store) RecordTriggerAttempt(ctx context.Context, id int64, run int, a TriggerAttempt) error {
	now := s.now()
	var status any = a.Status
	if a.Status != models.TriggerDelivered {
		status = gorm.Expr("CASE WHEN status IN (?, ?, ?) THEN status ELSE ? END",
			models.TriggerDelivered, models.TriggerFailed, models.TriggerSkipped, a.Status)
	}
	updates := map[string]any{
		"attempts":         gorm.Expr("attempts + 1"),
		"last_status_code": a.StatusCode,
		"last_error":       truncate(a.Err, 500),
		"last_attempt_at":  now,
		"status":           status,
		"updated_at":       now,
	}
	if a.Status == models.TriggerDelivered {
		updates["delivered_at"] = now
	}
	err := s.db.WithContext(ctx).Model(&models.TriggerDelivery{}).
		Where("id = ? AND resends = ?", id, run).
		Updates(updates).Error
	if err != nil {
		return fmt.Errorf("recording attempt of delivery %d: %w", id, mapErr(err))
	}
	return nil
}

// FinishTriggerDelivery gives run a final state without an attempt: the
// rule is gone (skipped), or retries ran out (failed). A delivered
// delivery stays delivered.
func (s *Store) FinishTriggerDelivery(ctx context.Context, id int64, run int, status, reason string) error {
	err := s.db.WithContext(ctx).Model(&models.TriggerDelivery{}).
		Where("id = ? AND resends = ? AND status <> ?", id, run, models.TriggerDelivered).
		Updates(map[string]any{
			"status":     status,
			"last_error": truncate(reason, 500),
			"updated_at": s.now(),
		}).Error
	if err != nil {
		return fmt.Errorf("finishing delivery %d: %w", id, mapErr(err))
	}
	return nil
}

// ResendTriggerDelivery starts a new run of a finished delivery: it is
// pending again, under the next run number, waiting to be dispatched. A
// delivery still being attempted gives ErrBusy.
func (s *Store) ResendTriggerDelivery(ctx context.Context, id int64) (*models.TriggerDelivery, error) {
	var d models.TriggerDelivery
	err := s.transaction(ctx, func(tx *gorm.DB) error {
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Take(&d, id).Error; err != nil {
			return err
		}
		if d.Status == models.TriggerPending || d.Status == models.TriggerRetrying {
			return ErrBusy
		}
		d.Status = models.TriggerPending
		d.Resends++
		d.DispatchedAt = nil
		d.UpdatedAt = s.now()
		return tx.Model(&d).Updates(map[string]any{
			"status":        d.Status,
			"resends":       d.Resends,
			"dispatched_at": nil,
			"updated_at":    d.UpdatedAt,
		}).Error
	})
	if err != nil {
		return nil, fmt.Errorf("resending delivery %d: %w", id, err)
	}
	return &d, nil
}

// ReserveSlot books the next sending slot of a rate-limited destination
// (see models.TriggerThrottle):
// slots are interval apart, shared by every process. It books only a slot
// at most horizon away; a later one is returned unbooked, for the caller
// to come back then instead of holding a slot it cannot use yet.
func (s *Store) ReserveSlot(ctx context.Context, destination string,
	interval, horizon time.Duration) (slot time.Time, booked bool, err error) {
	// Postgres keeps microseconds: whole microseconds keep the slots a
	// full interval apart once stored.
	interval = interval.Truncate(time.Microsecond) + time.Microsecond
	err = s.transaction(ctx, func(tx *gorm.DB) error {
		now := s.now().Truncate(time.Microsecond)
		seed := models.TriggerThrottle{Destination: destination, NextAt: now}
		if err := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&seed).Error; err != nil {
			return err
		}
		var t models.TriggerThrottle
		err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("destination = ?", destination).Take(&t).Error
		if err != nil {
			return err
		}
		slot = t.NextAt
		if slot.Before(now) {
			slot = now
		}
		if slot.Sub(now) > horizon {
			return nil
		}
		booked = true
		return tx.Model(&models.TriggerThrottle{}).Where("destination = ?", destination).
			Update("next_at", slot.Add(interval)).Error
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("reserving a sending slot: %w", err)
	}
	return slot, booked, nil
}

// truncate cuts s to at most n bytes without splitting a character:
// Postgres refuses invalid UTF-8.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

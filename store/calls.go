package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
)

// CallDelivery is what one CTM delivery says about a call, parsed and with
// the caller's number in E.164 (empty when withheld or unreadable).
type CallDelivery struct {
	DeliveryID int64
	Kind       string
	// Version orders deliveries of one call; see Version.
	Version int64
	Call    *ctm.Call
	Phone   string
	// ReceivedAt is when the webhook arrived, for latency metrics.
	ReceivedAt time.Time
}

// Version orders what deliveries say about one call. CTM does not
// guarantee order, so a delivery's data replaces a group of stored fields
// only when its version is at least the group's; an older delivery only
// fills fields still empty. A start always ranks below an end or update,
// so a start retried late can never roll an ended call back; ends and
// updates (both whole call objects) are ordered by CTM's send time.
func Version(kind string, sentAt time.Time) int64 {
	rank := int64(2)
	if kind == models.KindCallStart {
		rank = 1
	}
	var secs int64
	if !sentAt.IsZero() {
		secs = sentAt.Unix()
	}
	return rank*10_000_000_000 + secs
}

// CallRecord is the outcome of recording a delivery's call.
type CallRecord struct {
	LeadID      int64
	CallID      int64
	LeadCreated bool
	// CallCreated says this delivery created the call row.
	CallCreated bool
	// Stage is the call's stage after the delivery was applied.
	Stage string
	// EventIDs are the lead events this write appended.
	EventIDs []int64
}

// RecordCall makes sure the call and its caller's lead exist, and applies
// the delivery's identity and attribution fields. A new caller gets a new
// lead; a known number in the same account gets the call attached to its
// existing lead. It also marks the delivery processed.
func (s *Store) RecordCall(ctx context.Context, d CallDelivery) (CallRecord, error) {
	var rec CallRecord
	err := s.transaction(ctx, func(tx *gorm.DB) error {
		now := s.now()
		call, err := lockCall(tx, d.Call.AccountID, d.Call.ID)
		if errors.Is(err, ErrNotFound) {
			call, err = s.createCall(tx, d, now, &rec)
			rec.CallCreated = err == nil
		}
		if err != nil {
			return err
		}

		c := d.Call
		m := newMerge(d.Version >= call.CoreVersion)
		mergeValue(m, "sid", call.SID, c.SID)
		mergeValue(m, "direction", call.Direction, c.Direction)
		mergeValue(m, "dial_status", call.DialStatus, c.DialStatus)
		mergeValue(m, "caller_number", call.CallerNumber, d.Phone)
		mergeValue(m, "caller_name", call.CallerName, c.CallerName())
		mergeValue(m, "tracking_number", call.TrackingNumber, c.TrackingNumber)
		mergeValue(m, "tracking_label", call.TrackingLabel, c.TrackingLabel)
		mergeValue(m, "source", call.Source, c.Source)
		mergeValue(m, "medium", call.Medium, c.Medium)
		mergeValue(m, "campaign", call.Campaign, c.Campaign)
		mergeValue(m, "keyword", call.Keyword, c.Keyword)
		mergeValue(m, "referrer", call.Referrer, c.Referrer)
		mergePtr(m, "is_new_caller", call.IsNewCaller, c.IsNewCaller)
		if started := c.StartedAt(); !started.IsZero() {
			mergePtr(m, "started_at", call.StartedAt, &started)
		}
		m.version("core_version", d.Version)
		if err := m.apply(tx, call.ID, now); err != nil {
			return err
		}

		src := ctmSource{callID: c.ID, startedAt: c.StartedAt(), version: d.Version}
		if err := s.applyToLead(tx, call.LeadID, src, c, now); err != nil {
			return err
		}
		if err := markProcessed(tx, d.DeliveryID, now); err != nil {
			return err
		}

		rec.LeadID = call.LeadID
		rec.CallID = call.ID
		rec.Stage = call.Stage
		return nil
	})
	if err != nil {
		return CallRecord{}, fmt.Errorf("recording call: %w", err)
	}
	return rec, nil
}

// createCall inserts the call, and its lead when the caller is new.
func (s *Store) createCall(tx *gorm.DB, d CallDelivery, now time.Time, rec *CallRecord) (*models.Call, error) {
	lead, created, err := findOrCreateLead(tx, d.Call.AccountID, d.Phone, now)
	if err != nil {
		return nil, err
	}
	call := &models.Call{
		AccountID: d.Call.AccountID,
		CTMCallID: d.Call.ID,
		LeadID:    lead.ID,
		Stage:     models.StageStarted,
		StageRank: models.StageRanks[models.StageStarted],
		CreatedAt: now,
		UpdatedAt: now,
	}
	// Per call, the workflow serialises deliveries; a conflict here means
	// that invariant broke, and the retry finds the row.
	if err := tx.Create(call).Error; err != nil {
		return nil, mapErr(err)
	}

	occurred := d.Call.StartedAt()
	if occurred.IsZero() {
		occurred = now
	}
	if created {
		err := appendEvent(tx, rec, models.LeadEvent{
			LeadID:     lead.ID,
			CallID:     &call.ID,
			Type:       models.EventLeadCreated,
			DedupeKey:  fmt.Sprintf("%s:%d", models.EventLeadCreated, lead.ID),
			OccurredAt: occurred,
			CreatedAt:  now,
			Data:       map[string]any{"via": "call", "ctm_call_id": call.CTMCallID},
		})
		if err != nil {
			return nil, err
		}
	}
	err = appendEvent(tx, rec, models.LeadEvent{
		LeadID:     lead.ID,
		CallID:     &call.ID,
		Type:       models.EventCallStarted,
		DedupeKey:  fmt.Sprintf("%s:%d", models.EventCallStarted, call.ID),
		OccurredAt: occurred,
		CreatedAt:  now,
		Data:       map[string]any{"ctm_call_id": call.CTMCallID},
	})
	if err != nil {
		return nil, err
	}
	rec.LeadCreated = created
	return call, nil
}

// StepResult is the outcome of one end-of-call step.
type StepResult struct {
	// EventIDs are the lead events the step appended.
	EventIDs []int64
}

// AttachRecording stores the call's recording URL: CTM's own URL, which
// stays valid, never the short-lived link it redirects to.
func (s *Store) AttachRecording(ctx context.Context, d CallDelivery) (StepResult, error) {
	var res StepResult
	err := s.withCall(ctx, d, func(tx *gorm.DB, call *models.Call, now time.Time) error {
		m := newMerge(d.Version >= call.RecordingVersion)
		mergeValue(m, "recording_url", call.RecordingURL, d.Call.Audio)
		m.version("recording_version", d.Version)
		if err := m.apply(tx, call.ID, now); err != nil {
			return err
		}
		if call.RecordingURL != "" || !m.sets("recording_url") {
			return nil
		}
		return appendCallEvent(tx, &res.EventIDs, call, models.EventRecordingReady, "", now, nil)
	})
	if err != nil {
		return StepResult{}, fmt.Errorf("attaching recording: %w", err)
	}
	return res, nil
}

// AttachTranscript stores the call's transcript and AI summary.
func (s *Store) AttachTranscript(ctx context.Context, d CallDelivery) (StepResult, error) {
	var res StepResult
	err := s.withCall(ctx, d, func(tx *gorm.DB, call *models.Call, now time.Time) error {
		m := newMerge(d.Version >= call.TranscriptVersion)
		mergeValue(m, "transcript", call.Transcript, d.Call.TranscriptionText)
		mergeValue(m, "summary", call.Summary, d.Call.Summary)
		m.version("transcript_version", d.Version)
		if err := m.apply(tx, call.ID, now); err != nil {
			return err
		}
		if call.Transcript != "" || !m.sets("transcript") {
			return nil
		}
		data := map[string]any{
			"transcript_chars": len(d.Call.TranscriptionText),
			"has_summary":      d.Call.Summary != "" || call.Summary != "",
		}
		return appendCallEvent(tx, &res.EventIDs, call, models.EventTranscriptReady, "", now, data)
	})
	if err != nil {
		return StepResult{}, fmt.Errorf("attaching transcript: %w", err)
	}
	return res, nil
}

// RecordOutcome stores how the call went: statuses, durations, agent, star
// rating, tags, notes and custom fields. With ends set it also moves the
// call to the ended stage, once.
func (s *Store) RecordOutcome(ctx context.Context, d CallDelivery, ends bool) (StepResult, error) {
	var res StepResult
	err := s.withCall(ctx, d, func(tx *gorm.DB, call *models.Call, now time.Time) error {
		c := d.Call
		m := newMerge(d.Version >= call.OutcomeVersion)
		mergeValue(m, "status", call.Status, c.CallStatus)
		mergeValue(m, "duration_seconds", call.DurationSeconds, c.Duration)
		mergeValue(m, "talk_time_seconds", call.TalkTimeSeconds, c.TalkTime)
		mergeValue(m, "ring_time_seconds", call.RingTimeSeconds, c.RingTime)
		mergeValue(m, "hold_time_seconds", call.HoldTimeSeconds, c.HoldTime)
		mergeValue(m, "agent_id", call.AgentID, c.Agent.ID)
		mergeValue(m, "agent_name", call.AgentName, c.Agent.Name)
		mergeValue(m, "agent_email", call.AgentEmail, c.Agent.Email)
		mergeValue(m, "notes", call.Notes, c.Notes)
		mergeJSON(m, "tags", call.Tags, c.Tags)
		mergeJSON(m, "custom_fields", call.CustomFields, c.CustomFields)
		if c.Sale != nil {
			mergePtr(m, "star_rating", call.StarRating, c.Sale.Score)
			mergePtr(m, "conversion", call.Conversion, c.Sale.Conversion)
			mergePtr(m, "sale_value", call.SaleValue, c.Sale.Value)
		}

		ending := ends && call.StageRank < models.StageRanks[models.StageEnded]
		if ending {
			m.updates["stage"] = models.StageEnded
			m.updates["stage_rank"] = models.StageRanks[models.StageEnded]
			if call.EndedAt == nil {
				m.updates["ended_at"] = endedAt(call, c, now)
			}
		}
		m.version("outcome_version", d.Version)
		if err := m.apply(tx, call.ID, now); err != nil {
			return err
		}

		if ending {
			data := map[string]any{"status": firstNonEmpty(c.CallStatus, call.Status)}
			if err := appendCallEvent(tx, &res.EventIDs, call, models.EventCallEnded, "", now, data); err != nil {
				return err
			}
		}
		if rating, ok := m.updates["star_rating"].(int); ok {
			key := fmt.Sprint(rating)
			data := map[string]any{"star_rating": rating}
			if err := appendCallEvent(tx, &res.EventIDs, call, models.EventCallScored, key, now, data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return StepResult{}, fmt.Errorf("recording outcome: %w", err)
	}
	return res, nil
}

// MarkEndMissing records that the call's end never arrived in time. It
// does nothing to a call that has ended meanwhile.
func (s *Store) MarkEndMissing(ctx context.Context, accountID, ctmCallID int64) (StepResult, error) {
	var res StepResult
	err := s.transaction(ctx, func(tx *gorm.DB) error {
		call, err := lockCall(tx, accountID, ctmCallID)
		if err != nil {
			return err
		}
		rank := models.StageRanks[models.StageEndMissing]
		if call.StageRank >= rank {
			return nil
		}
		now := s.now()
		err = tx.Model(&models.Call{}).Where("id = ?", call.ID).Updates(map[string]any{
			"stage":      models.StageEndMissing,
			"stage_rank": rank,
			"updated_at": now,
		}).Error
		if err != nil {
			return err
		}
		return appendCallEvent(tx, &res.EventIDs, call, models.EventCallEndMissing, "", now, nil)
	})
	if err != nil {
		return StepResult{}, fmt.Errorf("marking end missing: %w", err)
	}
	return res, nil
}

// withCall runs fn on the delivery's call, locked, in a transaction.
func (s *Store) withCall(ctx context.Context, d CallDelivery, fn func(*gorm.DB, *models.Call, time.Time) error) error {
	return s.transaction(ctx, func(tx *gorm.DB) error {
		call, err := lockCall(tx, d.Call.AccountID, d.Call.ID)
		if err != nil {
			return err
		}
		return fn(tx, call, s.now())
	})
}

func lockCall(tx *gorm.DB, accountID, ctmCallID int64) (*models.Call, error) {
	var call models.Call
	err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).
		Where("account_id = ? AND ctm_call_id = ?", accountID, ctmCallID).
		Take(&call).Error
	if err != nil {
		return nil, mapErr(err)
	}
	return &call, nil
}

func endedAt(call *models.Call, c *ctm.Call, now time.Time) time.Time {
	start := c.StartedAt()
	if start.IsZero() && call.StartedAt != nil {
		start = *call.StartedAt
	}
	if start.IsZero() || c.Duration <= 0 {
		return now
	}
	return start.Add(time.Duration(c.Duration) * time.Second)
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// appendCallEvent records a call's event once; keySuffix tells apart
// events of one type that may legitimately repeat (a new star rating).
func appendCallEvent(
	tx *gorm.DB, ids *[]int64, call *models.Call,
	typ, keySuffix string, now time.Time, data map[string]any,
) error {
	key := fmt.Sprintf("%s:%d", typ, call.ID)
	if keySuffix != "" {
		key += ":" + keySuffix
	}
	if data == nil {
		data = map[string]any{}
	}
	data["ctm_call_id"] = call.CTMCallID
	callID := call.ID
	ev := models.LeadEvent{
		LeadID:     call.LeadID,
		CallID:     &callID,
		Type:       typ,
		DedupeKey:  key,
		OccurredAt: now,
		Data:       data,
	}
	var rec CallRecord
	if err := appendEvent(tx, &rec, ev); err != nil {
		return err
	}
	*ids = append(*ids, rec.EventIDs...)
	return nil
}

// appendEvent inserts ev unless an event with its dedupe key exists, and
// notes the new id in rec.
func appendEvent(tx *gorm.DB, rec *CallRecord, ev models.LeadEvent) error {
	if ev.CreatedAt.IsZero() {
		ev.CreatedAt = ev.OccurredAt
	}
	res := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&ev)
	if res.Error != nil {
		return mapErr(res.Error)
	}
	if res.RowsAffected == 1 && ev.ID != 0 {
		rec.EventIDs = append(rec.EventIDs, ev.ID)
	}
	return nil
}

// merge collects the column updates a delivery makes to one group of
// fields. When the delivery is newer than the group it replaces every
// field it carries; when older it only fills fields still empty. A field
// the delivery leaves empty is never cleared: CTM omits what it lacks.
type merge struct {
	newer   bool
	updates map[string]any
}

func newMerge(newer bool) *merge {
	return &merge{newer: newer, updates: map[string]any{}}
}

func mergeValue[T comparable](m *merge, col string, cur, in T) {
	var zero T
	if in == zero || in == cur {
		return
	}
	if m.newer || cur == zero {
		m.updates[col] = in
	}
}

func mergePtr[T comparable](m *merge, col string, cur, in *T) {
	if in == nil || (cur != nil && *cur == *in) {
		return
	}
	if m.newer || cur == nil {
		m.updates[col] = *in
	}
}

// mergeJSON merges a slice or map column, stored as JSON text.
func mergeJSON[T any](m *merge, col string, cur, in T) {
	inV, curV := reflect.ValueOf(in), reflect.ValueOf(cur)
	if inV.Len() == 0 || reflect.DeepEqual(cur, in) {
		return
	}
	if m.newer || curV.Len() == 0 {
		m.updates[col] = jsonValue{in}
	}
}

// version moves the group's version forward when the delivery is newer.
func (m *merge) version(col string, v int64) {
	if m.newer {
		m.updates[col] = v
	}
}

func (m *merge) sets(col string) bool {
	_, ok := m.updates[col]
	return ok
}

func (m *merge) apply(tx *gorm.DB, callID int64, now time.Time) error {
	if len(m.updates) == 0 {
		return nil
	}
	m.updates["updated_at"] = now
	err := tx.Model(&models.Call{}).Where("id = ?", callID).Updates(m.updates).Error
	return mapErr(err)
}

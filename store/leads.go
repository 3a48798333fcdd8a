package store

import (
	"context"
	"crypto/rand"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
)

// findOrCreateLead returns the account's lead for phone, creating it when
// the number is new. An empty phone (withheld number) always creates a
// lead: there is nothing to match it on.
func findOrCreateLead(tx *gorm.DB, accountID int64, phone string, now time.Time) (*models.Lead, bool, error) {
	lead := &models.Lead{
		AccountID:  accountID,
		Provenance: map[string]models.FieldOrigin{},
		CreatedAt:  now,
		UpdatedAt:  now,
	}
	if phone == "" {
		if err := tx.Create(lead).Error; err != nil {
			return nil, false, mapErr(err)
		}
		return lead, true, nil
	}

	lead.Phone = &phone
	lead.Provenance["phone"] = models.FieldOrigin{By: models.OriginCTM, At: now}
	// Two first calls from one number can race; the unique index lets one
	// insert win and the other find its row.
	res := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(lead)
	if res.Error != nil {
		return nil, false, mapErr(res.Error)
	}
	if res.RowsAffected == 1 && lead.ID != 0 {
		return lead, true, nil
	}

	var existing models.Lead
	err := tx.Where("account_id = ? AND phone = ?", accountID, phone).Take(&existing).Error
	if err != nil {
		return nil, false, mapErr(err)
	}
	return &existing, false, nil
}

// DefaultCreateOnlyFields are the lead fields CTM sets only while they are
// empty: the first touch's attribution, which a repeat call from another
// campaign must not rewrite.
var DefaultCreateOnlyFields = []string{"source", "medium", "campaign"}

// ctmSource is the CTM data applied to a lead: which call (or message)
// it describes and how it ranks among that call's deliveries.
type ctmSource struct {
	callID    int64
	startedAt time.Time
	version   int64
}

// newerThan says whether src may replace a value CTM set from o. Within
// one call, store.Version orders deliveries (an end outranks a start
// whenever sent). Across calls, the call that started later describes
// the caller more recently; ids break a tie.
func (src ctmSource) newerThan(o models.FieldOrigin) bool {
	if o.CTMCallID == 0 || o.CTMCallID == src.callID {
		return src.version >= o.Version
	}
	if o.CallStartedAt != nil && !src.startedAt.IsZero() && !o.CallStartedAt.Equal(src.startedAt) {
		return src.startedAt.After(*o.CallStartedAt)
	}
	return src.callID > o.CTMCallID
}

func (src ctmSource) origin(now time.Time) models.FieldOrigin {
	o := models.FieldOrigin{
		By:        models.OriginCTM,
		At:        now,
		CTMCallID: src.callID,
		Version:   src.version,
	}
	if !src.startedAt.IsZero() {
		started := src.startedAt
		o.CallStartedAt = &started
	}
	return o
}

// applyToLead copies what CTM knows of the caller into the lead, by these
// rules:
//
//   - a field a person set is theirs: CTM never changes it, even to fill
//     it after they cleared it;
//   - an empty field takes CTM's value;
//   - a create-only field (DefaultCreateOnlyFields, configurable) keeps
//     the first value CTM gave it;
//   - any other field CTM set takes newer CTM data, and only newer (see
//     ctmSource.newerThan): a delivery arriving late never rolls it back.
//
// A value CTM leaves empty never clears a field.
func (s *Store) applyToLead(tx *gorm.DB, leadID int64, src ctmSource, c *ctm.Call, now time.Time) error {
	var lead models.Lead
	err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Take(&lead, leadID).Error
	if err != nil {
		return mapErr(err)
	}

	prov := lead.Provenance
	if prov == nil {
		prov = map[string]models.FieldOrigin{}
	}
	updates := map[string]any{}
	set := func(col, cur, in string) {
		if in == "" {
			return
		}
		o := prov[col]
		switch {
		case o.By == models.OriginStaff:
			return
		case in == cur && o.CTMCallID == src.callID && o.Version == src.version:
			return // a redelivery: nothing new, and "at" stays when it was set
		case cur == "":
		case s.createOnly[col]:
			return
		case !src.newerThan(o):
			return
		}
		if in != cur {
			updates[col] = in
		}
		prov[col] = src.origin(now)
		updates["provenance"] = jsonValue{prov}
	}
	set("name", lead.Name, c.CallerName())
	set("email", lead.Email, c.Email)
	set("city", lead.City, c.City)
	set("state", lead.State, c.State)
	set("country", lead.Country, c.Country)
	set("postal_code", lead.PostalCode, c.PostalCode)
	set("source", lead.Source, c.Source)
	set("medium", lead.Medium, c.Medium)
	set("campaign", lead.Campaign, c.Campaign)
	if len(updates) == 0 {
		return nil
	}

	updates["updated_at"] = now
	return mapErr(tx.Model(&models.Lead{}).Where("id = ?", leadID).Updates(updates).Error)
}

// LeadEdit is a staff edit of a lead: new values by column, from
// models.LeadFields or "phone" (E.164; it must not belong to another lead of
// the account). An empty value clears the field, and the field stays the
// staff's: CTM will not fill it again.
type LeadEdit map[string]string

// EditLead applies a staff edit. Every field named becomes the staff's,
// even when its value does not change: a person confirmed it. It appends
// a lead.updated event naming the fields (never their values). A phone
// number another lead of the account has is ErrConflict.
func (s *Store) EditLead(ctx context.Context, id int64, edit LeadEdit) (*models.Lead, error) {
	err := s.transaction(ctx, func(tx *gorm.DB) error {
		var lead models.Lead
		err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Take(&lead, id).Error
		if err != nil {
			return mapErr(err)
		}
		now := s.now()
		prov := lead.Provenance
		if prov == nil {
			prov = map[string]models.FieldOrigin{}
		}

		updates := map[string]any{}
		names := make([]string, 0, len(edit))
		for col, v := range edit {
			if col == "phone" {
				if v == "" {
					return errors.New("a lead's phone number cannot be cleared")
				}
				if err := phoneFree(tx, lead, v); err != nil {
					return err
				}
			} else if !slices.Contains(models.LeadFields, col) {
				return fmt.Errorf("lead field %q is not editable", col)
			}
			updates[col] = v
			prov[col] = models.FieldOrigin{By: models.OriginStaff, At: now}
			names = append(names, col)
		}
		if len(names) == 0 {
			return nil
		}
		sort.Strings(names)
		updates["provenance"] = jsonValue{prov}
		updates["updated_at"] = now
		err = tx.Model(&models.Lead{}).Where("id = ?", id).Updates(updates).Error
		if err != nil {
			return mapErr(err)
		}

		var rec CallRecord
		return appendEvent(tx, &rec, models.LeadEvent{
			LeadID: id,
			Type:   models.EventLeadStaffUpdated,
			// Every edit is its own fact; the random part keeps two edits
			// in the same instant apart.
			DedupeKey:  fmt.Sprintf("%s:%d:%d:%s", models.EventLeadStaffUpdated, id, now.UnixNano(), randomHex(4)),
			OccurredAt: now,
			Data:       map[string]any{"by": models.OriginStaff, "fields": names},
		})
	})
	if err != nil {
		return nil, fmt.Errorf("editing lead %d: %w", id, err)
	}
	return s.GetLead(ctx, id)
}

// phoneFree checks that no other lead of the account has phone.
func phoneFree(tx *gorm.DB, lead models.Lead, phone string) error {
	var n int64
	err := tx.Model(&models.Lead{}).
		Where("account_id = ? AND phone = ? AND id <> ?", lead.AccountID, phone, lead.ID).
		Count(&n).Error
	if err != nil {
		return mapErr(err)
	}
	if n > 0 {
		return ErrConflict
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// jsonValue stores a value as JSON text, in map-based updates where
// gorm's serializer tag does not apply.
type jsonValue struct{ v any }

// Value implements driver.Valuer.
func (j jsonValue) Value() (driver.Value, error) {
	b, err := json.Marshal(j.v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// LeadFilter narrows ListLeads.
type LeadFilter struct {
	// Phone, in E.164, matches one caller.
	Phone string
	// AccountID, when non-zero, keeps one CTM account's leads.
	AccountID int64
	// AfterID pages: only leads with a smaller id (newest first).
	AfterID int64
	// Limit caps the page; 0 means 50.
	Limit int
}

// ListLeads returns leads newest first, each with its calls and events.
func (s *Store) ListLeads(ctx context.Context, f LeadFilter) ([]models.Lead, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	q := s.withTimeline(s.db.WithContext(ctx)).Order("id DESC").Limit(f.Limit)
	if f.Phone != "" {
		q = q.Where("phone = ?", f.Phone)
	}
	if f.AccountID != 0 {
		q = q.Where("account_id = ?", f.AccountID)
	}
	if f.AfterID > 0 {
		q = q.Where("id < ?", f.AfterID)
	}

	var leads []models.Lead
	if err := q.Find(&leads).Error; err != nil {
		return nil, fmt.Errorf("listing leads: %w", mapErr(err))
	}
	return leads, nil
}

// GetLead returns one lead with its calls and events.
func (s *Store) GetLead(ctx context.Context, id int64) (*models.Lead, error) {
	var lead models.Lead
	err := s.withTimeline(s.db.WithContext(ctx)).Take(&lead, id).Error
	if err != nil {
		return nil, fmt.Errorf("loading lead %d: %w", id, mapErr(err))
	}
	return &lead, nil
}

func (s *Store) withTimeline(q *gorm.DB) *gorm.DB {
	return q.
		Preload("Calls", func(db *gorm.DB) *gorm.DB { return db.Order("id") }).
		Preload("Events", func(db *gorm.DB) *gorm.DB { return db.Order("id") })
}

// GetCallByID returns a call by its own id.
func (s *Store) GetCallByID(ctx context.Context, id int64) (*models.Call, error) {
	var call models.Call
	if err := s.db.WithContext(ctx).Take(&call, id).Error; err != nil {
		return nil, fmt.Errorf("loading call row %d: %w", id, mapErr(err))
	}
	return &call, nil
}

// GetCall returns a call by its CTM account and id.
func (s *Store) GetCall(ctx context.Context, accountID, ctmCallID int64) (*models.Call, error) {
	var call models.Call
	err := s.db.WithContext(ctx).
		Where("account_id = ? AND ctm_call_id = ?", accountID, ctmCallID).
		Take(&call).Error
	if err != nil {
		return nil, fmt.Errorf("loading call %d: %w", ctmCallID, mapErr(err))
	}
	return &call, nil
}

package store

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"fmt"
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

// fillLead copies what CTM knows of the caller into the lead's empty
// fields. It never replaces a value already there: a name or source that
// staff corrected must survive every later webhook.
func (s *Store) fillLead(tx *gorm.DB, leadID int64, c *ctm.Call, now time.Time) error {
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
	fill := func(col, cur, in string) {
		if cur != "" || in == "" {
			return
		}
		if prov[col].By == models.OriginStaff {
			return
		}
		updates[col] = in
		prov[col] = models.FieldOrigin{By: models.OriginCTM, At: now}
	}
	fill("name", lead.Name, c.CallerName())
	fill("email", lead.Email, c.Email)
	fill("city", lead.City, c.City)
	fill("state", lead.State, c.State)
	fill("country", lead.Country, c.Country)
	fill("postal_code", lead.PostalCode, c.PostalCode)
	fill("source", lead.Source, c.Source)
	fill("medium", lead.Medium, c.Medium)
	fill("campaign", lead.Campaign, c.Campaign)
	if len(updates) == 0 {
		return nil
	}

	updates["provenance"] = jsonValue{prov}
	updates["updated_at"] = now
	return mapErr(tx.Model(&models.Lead{}).Where("id = ?", leadID).Updates(updates).Error)
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

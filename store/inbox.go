package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/ctmflow/ctmflow/models"
)

// ErrPurged means a delivery's raw body was removed after its retention.
var ErrPurged = errors.New("delivery body purged after retention")

// SaveDelivery stores a webhook delivery before CTM is answered. With a
// non-empty owner the row is stored already leased to it, so the relay
// that received it dispatches it at once without a second write to claim
// it. A redelivery of a body already stored for the same account and kind
// is recognised: d is filled with the stored row and duplicate is true.
func (s *Store) SaveDelivery(
	ctx context.Context, d *models.Delivery, owner string, lease time.Duration,
) (duplicate bool, err error) {
	now := s.now()
	if d.ReceivedAt.IsZero() {
		d.ReceivedAt = now
	}
	d.Status = models.DeliveryPending
	d.NextAttemptAt = d.ReceivedAt
	if owner != "" {
		until := now.Add(lease)
		d.LeaseOwner, d.LeaseUntil, d.Attempts = owner, &until, 1
	}

	return s.insertDelivery(ctx, d)
}

// SaveFetched stores a call object fetched from CTM's API as a delivery
// that a workflow applies itself rather than through the relay, so it is
// stored already dispatched. Like SaveDelivery it recognises a body
// already stored for the account and kind: d is filled with that row and
// duplicate is true.
func (s *Store) SaveFetched(ctx context.Context, d *models.Delivery) (duplicate bool, err error) {
	now := s.now()
	if d.ReceivedAt.IsZero() {
		d.ReceivedAt = now
	}
	d.Status = models.DeliveryDispatched
	d.NextAttemptAt = d.ReceivedAt
	d.DispatchedAt = &now
	body := d.Body
	dup, err := s.insertDelivery(ctx, d)
	if err != nil || !dup || d.PurgedAt == nil {
		return dup, err
	}

	// The same object was fetched before and its body purged since: the
	// workflow about to apply it needs the body back.
	err = s.db.WithContext(ctx).Model(&models.Delivery{}).Where("id = ?", d.ID).
		Updates(map[string]any{"body": body, "purged_at": nil, "processed_at": nil}).Error
	if err != nil {
		return true, fmt.Errorf("restoring delivery %d: %w", d.ID, mapErr(err))
	}
	d.Body, d.PurgedAt, d.ProcessedAt = body, nil, nil
	return true, nil
}

func (s *Store) insertDelivery(ctx context.Context, d *models.Delivery) (duplicate bool, err error) {
	db := s.db.WithContext(ctx)
	res := db.Clauses(clause.OnConflict{DoNothing: true}).Create(d)
	if res.Error != nil {
		return false, fmt.Errorf("saving delivery: %w", mapErr(res.Error))
	}
	if res.RowsAffected == 1 && d.ID != 0 {
		return false, nil
	}

	var existing models.Delivery
	err = db.Omit("body").
		Where("account_id = ? AND kind = ? AND body_sha256 = ?", d.AccountID, d.Kind, d.BodySHA256).
		Take(&existing).Error
	if err != nil {
		return false, fmt.Errorf("finding stored delivery: %w", mapErr(err))
	}
	*d = existing
	return true, nil
}

// DeliveryRef is what the relay needs to hand a delivery to its workflow:
// ids and kind, never the body. It holds no PHI and may be logged.
type DeliveryRef struct {
	ID         int64
	AccountID  int64
	Kind       string
	CTMID      int64  `gorm:"column:ctm_id"`
	CTMTime    string `gorm:"column:ctm_time"`
	ReceivedAt time.Time
	Attempts   int
	// LeaseUntil is when the claim this reference came from runs out;
	// after it another relay may claim the delivery.
	LeaseUntil time.Time `gorm:"-"`
}

const refColumns = "id, account_id, kind, ctm_id, ctm_time, received_at, attempts"

// Ref returns the delivery's reference.
func Ref(d *models.Delivery) DeliveryRef {
	ref := DeliveryRef{
		ID:         d.ID,
		AccountID:  d.AccountID,
		Kind:       d.Kind,
		CTMID:      d.CTMID,
		CTMTime:    d.CTMTime,
		ReceivedAt: d.ReceivedAt,
		Attempts:   d.Attempts,
	}
	if d.LeaseUntil != nil {
		ref.LeaseUntil = *d.LeaseUntil
	}
	return ref
}

// ClaimDue leases up to limit pending deliveries that are due, oldest
// first. On Postgres, SKIP LOCKED lets several relays claim side by side
// without waiting on or taking each other's rows; a lease that expires
// (its relay died) makes the row claimable again.
func (s *Store) ClaimDue(ctx context.Context, owner string, lease time.Duration, limit int) ([]DeliveryRef, error) {
	now := s.now()
	lock := ""
	if s.dialect == Postgres {
		lock = "FOR UPDATE SKIP LOCKED"
	}
	until := now.Add(lease)
	var refs []DeliveryRef
	err := s.db.WithContext(ctx).Raw(`
		UPDATE deliveries
		SET lease_owner = ?, lease_until = ?, attempts = attempts + 1
		WHERE id IN (
			SELECT id FROM deliveries
			WHERE status = ? AND next_attempt_at <= ?
			  AND (lease_until IS NULL OR lease_until < ?)
			ORDER BY id LIMIT ? `+lock+`
		)
		RETURNING `+refColumns,
		owner, until, models.DeliveryPending, now, now, limit,
	).Scan(&refs).Error
	if err != nil {
		return nil, fmt.Errorf("claiming due deliveries: %w", mapErr(err))
	}
	for i := range refs {
		refs[i].LeaseUntil = until
	}
	// RETURNING keeps no order; hand them over oldest first.
	slices.SortFunc(refs, func(a, b DeliveryRef) int { return cmp.Compare(a.ID, b.ID) })
	return refs, nil
}

// MarkDispatched records that the delivery reached its workflow.
func (s *Store) MarkDispatched(ctx context.Context, id int64, owner string) error {
	now := s.now()
	err := s.db.WithContext(ctx).Model(&models.Delivery{}).
		Where("id = ? AND lease_owner = ?", id, owner).
		Updates(map[string]any{
			"status":        models.DeliveryDispatched,
			"dispatched_at": now,
			"lease_owner":   "",
			"lease_until":   nil,
			"last_error":    "",
		}).Error
	if err != nil {
		return fmt.Errorf("marking delivery %d dispatched: %w", id, mapErr(err))
	}
	return nil
}

// RetryLater releases the delivery's lease and schedules another attempt.
// reason must not hold PHI; it is shown to ops.
func (s *Store) RetryLater(ctx context.Context, id int64, owner, reason string, at time.Time) error {
	if len(reason) > 500 {
		// Cut on a character boundary: Postgres refuses invalid UTF-8.
		reason = strings.ToValidUTF8(reason[:500], "")
	}
	err := s.db.WithContext(ctx).Model(&models.Delivery{}).
		Where("id = ? AND lease_owner = ?", id, owner).
		Updates(map[string]any{
			"lease_owner":     "",
			"lease_until":     nil,
			"last_error":      reason,
			"next_attempt_at": at,
		}).Error
	if err != nil {
		return fmt.Errorf("rescheduling delivery %d: %w", id, mapErr(err))
	}
	return nil
}

// GetDelivery returns a delivery with its body, or ErrPurged when only the
// record is left.
func (s *Store) GetDelivery(ctx context.Context, id int64) (*models.Delivery, error) {
	var d models.Delivery
	if err := s.db.WithContext(ctx).Take(&d, id).Error; err != nil {
		return nil, fmt.Errorf("loading delivery %d: %w", id, mapErr(err))
	}
	if d.PurgedAt != nil {
		return &d, fmt.Errorf("loading delivery %d: %w", id, ErrPurged)
	}
	return &d, nil
}

// markProcessed notes that a workflow has applied the delivery, which
// starts its body's retention clock.
func markProcessed(tx *gorm.DB, id int64, now time.Time) error {
	if id == 0 {
		return nil
	}
	err := tx.Exec("UPDATE deliveries SET processed_at = ? WHERE id = ? AND processed_at IS NULL", now, id).Error
	return mapErr(err)
}

// InboxStats summarises the deliveries not yet handed to a workflow.
type InboxStats struct {
	Pending int64
	// OldestPending is when the oldest pending delivery arrived; zero
	// when none is pending.
	OldestPending time.Time
}

// InboxStats counts pending deliveries and finds the oldest.
func (s *Store) InboxStats(ctx context.Context) (InboxStats, error) {
	db := s.db.WithContext(ctx)
	var st InboxStats
	err := db.Model(&models.Delivery{}).
		Where("status = ?", models.DeliveryPending).
		Count(&st.Pending).Error
	if err != nil {
		return InboxStats{}, wrapStats(err)
	}
	if st.Pending == 0 {
		return st, nil
	}

	// The oldest row is read whole rather than as MIN(received_at):
	// SQLite returns an aggregate as bare text, which no longer scans
	// into a time.
	var oldest models.Delivery
	err = db.Select("received_at").
		Where("status = ?", models.DeliveryPending).
		Order("received_at").
		Take(&oldest).Error
	if errors.Is(mapErr(err), ErrNotFound) {
		// Dispatched between the two reads.
		return st, nil
	}
	if err != nil {
		return InboxStats{}, wrapStats(err)
	}
	st.OldestPending = oldest.ReceivedAt.UTC()
	return st, nil
}

func wrapStats(err error) error {
	return fmt.Errorf("counting pending deliveries: %w", mapErr(err))
}

// DeliveryFilter narrows ListDeliveries.
type DeliveryFilter struct {
	// Status keeps one state (pending, dispatched); empty keeps all.
	Status string
	// AfterID pages: only deliveries with a smaller id (newest first).
	AfterID int64
	// Limit caps the page; 0 means 50.
	Limit int
}

// ListDeliveries returns deliveries newest first, without their bodies.
func (s *Store) ListDeliveries(ctx context.Context, f DeliveryFilter) ([]models.Delivery, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	q := s.db.WithContext(ctx).Omit("body").Order("id DESC").Limit(f.Limit)
	if f.Status != "" {
		q = q.Where("status = ?", f.Status)
	}
	if f.AfterID > 0 {
		q = q.Where("id < ?", f.AfterID)
	}
	var out []models.Delivery
	if err := q.Find(&out).Error; err != nil {
		return nil, fmt.Errorf("listing deliveries: %w", mapErr(err))
	}
	return out, nil
}

// ReplayDelivery makes a delivery pending again, so that the relay hands it
// to its workflow once more. Workflows apply deliveries idempotently, so a
// replay repairs without duplicating.
func (s *Store) ReplayDelivery(ctx context.Context, id int64) error {
	d, err := s.GetDelivery(ctx, id)
	if err != nil {
		return err
	}
	err = s.db.WithContext(ctx).Model(&models.Delivery{}).
		Where("id = ?", d.ID).
		Updates(map[string]any{
			"status":          models.DeliveryPending,
			"next_attempt_at": s.now(),
			"lease_owner":     "",
			"lease_until":     nil,
		}).Error
	if err != nil {
		return fmt.Errorf("replaying delivery %d: %w", id, mapErr(err))
	}
	return nil
}

// PurgeBodies drops the raw bodies (PHI) of deliveries processed before
// cutoff, keeping their records. It returns how many it purged.
func (s *Store) PurgeBodies(ctx context.Context, cutoff time.Time) (int64, error) {
	res := s.db.WithContext(ctx).Model(&models.Delivery{}).
		Where("processed_at < ? AND purged_at IS NULL", cutoff).
		Updates(map[string]any{"body": nil, "purged_at": s.now()})
	if res.Error != nil {
		return 0, fmt.Errorf("purging delivery bodies: %w", mapErr(res.Error))
	}
	return res.RowsAffected, nil
}

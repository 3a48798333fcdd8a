package store

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
)

// MessageDelivery is what one CTM delivery says about a text message.
type MessageDelivery struct {
	DeliveryID int64
	Message    *ctm.Call
	// Phone is the texter's number in E.164, empty when unreadable.
	Phone string
}

// MessageRecord is the outcome of recording a text message.
type MessageRecord struct {
	LeadID      int64
	MessageID   int64
	LeadCreated bool
	EventIDs    []int64
}

// RecordMessage attaches a text message to the texter's lead, creating the
// lead for a new number. Recording the same message again changes nothing.
func (s *Store) RecordMessage(ctx context.Context, d MessageDelivery) (MessageRecord, error) {
	var rec MessageRecord
	err := s.transaction(ctx, func(tx *gorm.DB) error {
		now := s.now()
		m := d.Message

		var msg models.Message
		err := tx.Where("account_id = ? AND ctm_message_id = ?", m.AccountID, m.ID).Take(&msg).Error
		switch err = mapErr(err); {
		case err == nil:
			rec.LeadID, rec.MessageID = msg.LeadID, msg.ID
			return markProcessed(tx, d.DeliveryID, now)
		case !errors.Is(err, ErrNotFound):
			return err
		}

		lead, created, err := findOrCreateLead(tx, m.AccountID, d.Phone, now)
		if err != nil {
			return err
		}
		sent := m.StartedAt()
		if sent.IsZero() {
			sent = now
		}
		msg = models.Message{
			AccountID:    m.AccountID,
			CTMMessageID: m.ID,
			LeadID:       lead.ID,
			Direction:    m.Direction,
			Body:         m.MessageBody,
			SentAt:       sent,
			CreatedAt:    now,
		}
		if err := tx.Create(&msg).Error; err != nil {
			return mapErr(err)
		}
		src := ctmSource{callID: m.ID, startedAt: sent, version: Version(models.KindTextMessage, sent)}
		if err := s.applyToLead(tx, lead.ID, src, m, now); err != nil {
			return err
		}

		var events CallRecord
		if created {
			err := appendEvent(tx, &events, models.LeadEvent{
				LeadID:     lead.ID,
				MessageID:  &msg.ID,
				Type:       models.EventLeadCreated,
				DedupeKey:  fmt.Sprintf("%s:%d", models.EventLeadCreated, lead.ID),
				OccurredAt: sent,
				CreatedAt:  now,
				Data:       map[string]any{"via": "text_message", "ctm_message_id": m.ID},
			})
			if err != nil {
				return err
			}
		}
		typ := models.EventMessageReceived
		if m.Direction == ctm.DirectionMsgOutbound {
			typ = models.EventMessageSent
		}
		err = appendEvent(tx, &events, models.LeadEvent{
			LeadID:     lead.ID,
			MessageID:  &msg.ID,
			Type:       typ,
			DedupeKey:  fmt.Sprintf("%s:%d", typ, msg.ID),
			OccurredAt: sent,
			CreatedAt:  now,
			Data:       map[string]any{"ctm_message_id": m.ID, "direction": m.Direction},
		})
		if err != nil {
			return err
		}

		rec = MessageRecord{
			LeadID:      lead.ID,
			MessageID:   msg.ID,
			LeadCreated: created,
			EventIDs:    events.EventIDs,
		}
		return markProcessed(tx, d.DeliveryID, now)
	})
	if err != nil {
		return MessageRecord{}, fmt.Errorf("recording message: %w", err)
	}
	return rec, nil
}

// HasMessage says whether the account's CTM message is recorded.
func (s *Store) HasMessage(ctx context.Context, accountID, ctmMessageID int64) (bool, error) {
	var n int64
	err := s.db.WithContext(ctx).Model(&models.Message{}).
		Where("account_id = ? AND ctm_message_id = ?", accountID, ctmMessageID).
		Count(&n).Error
	if err != nil {
		return false, fmt.Errorf("looking up message %d: %w", ctmMessageID, mapErr(err))
	}
	return n > 0, nil
}

package api

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ctmflow/ctmflow/httperr"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
)

// TriggerDelivery is one entry of the trigger delivery log: a lead event
// sent, or being sent, to one rule's destination. It never holds the
// payload.
type TriggerDelivery struct {
	ID        int64  `json:"id"`
	RuleID    int64  `json:"rule_id"`
	EventID   int64  `json:"event_id"`
	EventType string `json:"event_type"`
	LeadID    int64  `json:"lead_id"`
	// WebhookID is the webhook-id header the destination sees.
	WebhookID      string     `json:"webhook_id"`
	Status         string     `json:"status"`
	Attempts       int        `json:"attempts"`
	LastStatusCode int        `json:"last_status_code"`
	LastError      string     `json:"last_error"`
	LastAttemptAt  *time.Time `json:"last_attempt_at"`
	DeliveredAt    *time.Time `json:"delivered_at"`
	Resends        int        `json:"resends"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// NewTriggerDelivery renders a delivery log entry.
func NewTriggerDelivery(d *models.TriggerDelivery) TriggerDelivery {
	return TriggerDelivery{
		ID:             d.ID,
		RuleID:         d.RuleID,
		EventID:        d.EventID,
		EventType:      d.EventType,
		LeadID:         d.LeadID,
		WebhookID:      d.WebhookID,
		Status:         d.Status,
		Attempts:       d.Attempts,
		LastStatusCode: d.LastStatusCode,
		LastError:      d.LastError,
		LastAttemptAt:  utc(d.LastAttemptAt),
		DeliveredAt:    utc(d.DeliveredAt),
		Resends:        d.Resends,
		CreatedAt:      d.CreatedAt.UTC(),
		UpdatedAt:      d.UpdatedAt.UTC(),
	}
}

// TriggerDeliveryList is the body of GET /api/deliveries. Next, when
// non-zero, is the ?after= value of the following page.
type TriggerDeliveryList struct {
	Deliveries []TriggerDelivery `json:"deliveries"`
	Next       int64             `json:"next,omitempty"`
}

func (t *triggerRoutes) listDeliveries(c *gin.Context) {
	f := store.TriggerDeliveryFilter{Status: c.Query("status")}
	if f.Status != "" && !slices.Contains(models.TriggerStatuses, f.Status) {
		httperr.Abort(c, invalidField("status", "must be one of "+strings.Join(models.TriggerStatuses, ", ")))
		return
	}
	var err error
	if f.RuleID, err = int64Query(c, "rule_id", 0); err != nil {
		httperr.Abort(c, err)
		return
	}
	if f.LeadID, err = int64Query(c, "lead_id", 0); err != nil {
		httperr.Abort(c, err)
		return
	}
	if f.AfterID, f.Limit, err = pageQuery(c); err != nil {
		httperr.Abort(c, err)
		return
	}

	ds, err := t.api.opts.Store.ListTriggerDeliveries(c.Request.Context(), f)
	if err != nil {
		httperr.Abort(c, storageError("deliveries could not be loaded", err))
		return
	}
	out := TriggerDeliveryList{Deliveries: make([]TriggerDelivery, 0, len(ds))}
	for i := range ds {
		out.Deliveries = append(out.Deliveries, NewTriggerDelivery(&ds[i]))
	}
	if len(ds) == f.Limit {
		out.Next = ds[len(ds)-1].ID
	}
	c.JSON(http.StatusOK, out)
}

func (t *triggerRoutes) getDelivery(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	d, err := t.api.opts.Store.GetTriggerDelivery(c.Request.Context(), id)
	if err != nil {
		httperr.Abort(c, deliveryError(err, "delivery could not be loaded"))
		return
	}
	c.JSON(http.StatusOK, NewTriggerDelivery(d))
}

func (t *triggerRoutes) resend(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	if t.opts.Resender == nil {
		httperr.Abort(c, httperr.New(http.StatusServiceUnavailable, "resend_unavailable",
			"this process cannot start deliveries"))
		return
	}
	d, err := t.opts.Resender.Resend(c.Request.Context(), id)
	if err != nil {
		httperr.Abort(c, deliveryError(err, "delivery could not be resent"))
		return
	}
	c.JSON(http.StatusAccepted, NewTriggerDelivery(d))
}

func deliveryError(err error, what string) *httperr.Error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return httperr.New(http.StatusNotFound, "delivery_not_found", "no trigger delivery with that id")
	case errors.Is(err, store.ErrBusy):
		return httperr.New(http.StatusConflict, "delivery_in_progress",
			"the delivery is still being attempted; resend it once it has delivered or failed")
	}
	return storageError(what, err)
}

package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ctmflow/ctmflow/httperr"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
)

// Waker is told when a replayed delivery is waiting.
type Waker interface{ Wake() }

// RegisterInbox mounts the delivery inbox routes on the /api group g.
func (a *API) RegisterInbox(g *gin.RouterGroup, relay Waker) {
	g.GET("/inbox", a.inboxStats)
	g.GET("/inbox/deliveries", a.listDeliveries)
	g.POST("/inbox/deliveries/:id/replay", func(c *gin.Context) { a.replay(c, relay) })
}

// InboxStats is the body of GET /api/inbox.
type InboxStats struct {
	Pending int64 `json:"pending"`
	// OldestPendingAt is when the oldest pending delivery arrived.
	OldestPendingAt *time.Time `json:"oldest_pending_at"`
	// OldestPendingAgeSeconds is how long it has waited; 0 when none.
	OldestPendingAgeSeconds float64 `json:"oldest_pending_age_seconds"`
}

func (a *API) inboxStats(c *gin.Context) {
	st, err := a.opts.Store.InboxStats(c.Request.Context())
	if err != nil {
		httperr.Abort(c, httperr.Wrap(http.StatusInternalServerError, "storage_error",
			"inbox could not be read", err))
		return
	}
	out := InboxStats{Pending: st.Pending}
	if !st.OldestPending.IsZero() {
		out.OldestPendingAt = &st.OldestPending
		out.OldestPendingAgeSeconds = time.Since(st.OldestPending).Seconds()
	}
	c.JSON(http.StatusOK, out)
}

// Delivery is a stored webhook delivery as the API shows it: never its
// body, which holds PHI.
type Delivery struct {
	ID            int64      `json:"id"`
	AccountID     int64      `json:"account_id"`
	Kind          string     `json:"kind"`
	CTMID         int64      `json:"ctm_id"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	LastError     string     `json:"last_error"`
	ReceivedAt    time.Time  `json:"received_at"`
	NextAttemptAt time.Time  `json:"next_attempt_at"`
	DispatchedAt  *time.Time `json:"dispatched_at"`
	ProcessedAt   *time.Time `json:"processed_at"`
	PurgedAt      *time.Time `json:"purged_at"`
}

// NewDelivery renders a delivery.
func NewDelivery(d *models.Delivery) Delivery {
	return Delivery{
		ID:            d.ID,
		AccountID:     d.AccountID,
		Kind:          d.Kind,
		CTMID:         d.CTMID,
		Status:        d.Status,
		Attempts:      d.Attempts,
		LastError:     d.LastError,
		ReceivedAt:    d.ReceivedAt.UTC(),
		NextAttemptAt: d.NextAttemptAt.UTC(),
		DispatchedAt:  utc(d.DispatchedAt),
		ProcessedAt:   utc(d.ProcessedAt),
		PurgedAt:      utc(d.PurgedAt),
	}
}

func (a *API) listDeliveries(c *gin.Context) {
	f := store.DeliveryFilter{Status: c.Query("status")}
	if f.Status != "" && f.Status != models.DeliveryPending && f.Status != models.DeliveryDispatched {
		httperr.Abort(c, invalidField("status", "must be pending or dispatched"))
		return
	}
	var err error
	if f.AfterID, f.Limit, err = pageQuery(c); err != nil {
		httperr.Abort(c, err)
		return
	}

	ds, err := a.opts.Store.ListDeliveries(c.Request.Context(), f)
	if err != nil {
		httperr.Abort(c, httperr.Wrap(http.StatusInternalServerError, "storage_error",
			"deliveries could not be loaded", err))
		return
	}
	out := make([]Delivery, 0, len(ds))
	for i := range ds {
		out = append(out, NewDelivery(&ds[i]))
	}
	c.JSON(http.StatusOK, gin.H{"deliveries": out})
}

func (a *API) replay(c *gin.Context, relay Waker) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		httperr.Abort(c, invalidField("id", "must be a positive integer"))
		return
	}
	err = a.opts.Store.ReplayDelivery(c.Request.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		httperr.Abort(c, httperr.New(http.StatusNotFound, "delivery_not_found", "no delivery with that id"))
	case errors.Is(err, store.ErrPurged):
		httperr.Abort(c, httperr.New(http.StatusGone, "delivery_purged",
			"the delivery's body was purged after its retention and cannot be replayed"))
	case err != nil:
		httperr.Abort(c, httperr.Wrap(http.StatusInternalServerError, "storage_error",
			"delivery could not be replayed", err))
	default:
		if relay != nil {
			relay.Wake()
		}
		c.JSON(http.StatusAccepted, gin.H{"delivery_id": id, "status": "pending"})
	}
}

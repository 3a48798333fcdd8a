package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
)

// leadCreated asks for the facts of lead.created events.
var leadCreated = map[string]bool{models.EventLeadCreated: true}

func newRule(t *testing.T, st *store.Store, event string) *models.TriggerRule {
	t.Helper()
	r := &models.TriggerRule{
		Name: "rule " + event, Event: event, URL: "https://hooks.example.org/x",
		Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	}
	require.NoError(t, st.CreateRule(context.Background(), r))
	return r
}

func TestRules(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			ctx := context.Background()

			// History before the rule is not its business.
			s := ctm.Sample{AccountID: 7, CallID: 1, Phone: "+12395550171", Start: t0}
			rec := apply(t, st, delivery(t, models.KindCallStart, s.StartBody(), t0))
			require.NotEmpty(t, rec.EventIDs)

			r := newRule(t, st, models.EventCallScored)
			assert.Equal(t, rec.EventIDs[len(rec.EventIDs)-1], r.AfterEventID)

			rating := 4
			got, err := st.UpdateRule(ctx, r.ID, func(r *models.TriggerRule) error {
				r.Conditions.MinStarRating = &rating
				r.RateLimit = 1
				return nil
			})
			require.NoError(t, err)
			assert.Equal(t, 1.0, got.RateLimit)

			loaded, err := st.GetRule(ctx, r.ID)
			require.NoError(t, err)
			require.NotNil(t, loaded.Conditions.MinStarRating)
			assert.Equal(t, 4, *loaded.Conditions.MinStarRating)
			assert.True(t, loaded.Enabled())

			require.NoError(t, st.DisableRule(ctx, r.ID, "destination answered 410 Gone"))
			require.NoError(t, st.DisableRule(ctx, r.ID, "disabled by staff"))
			loaded, err = st.GetRule(ctx, r.ID)
			require.NoError(t, err)
			assert.False(t, loaded.Enabled())
			assert.Equal(t, "destination answered 410 Gone", loaded.DisabledReason, "the first reason stays")

			enabled, err := st.ListRules(ctx, store.RuleFilter{EnabledOnly: true})
			require.NoError(t, err)
			assert.Empty(t, enabled)

			require.NoError(t, st.DeleteRule(ctx, r.ID))
			assert.ErrorIs(t, st.DeleteRule(ctx, r.ID), store.ErrNotFound)
			_, err = st.GetRule(ctx, r.ID)
			assert.ErrorIs(t, err, store.ErrNotFound)
		})
	}
}

func TestFanOut(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			ctx := context.Background()
			r := newRule(t, st, models.EventLeadCreated)

			s := ctm.Sample{AccountID: 7, CallID: 2, Phone: "+12395550172", Start: t0}
			rec := apply(t, st, delivery(t, models.KindCallStart, s.StartBody(), t0))
			require.Len(t, rec.EventIDs, 2, "lead.created and call.started")

			unpublished, err := st.UnpublishedEvents(ctx, time.Now().Add(time.Hour), 100)
			require.NoError(t, err)
			assert.Equal(t, rec.EventIDs, unpublished)

			facts, ids, err := st.UnpublishedEventFacts(ctx, rec.EventIDs,
				map[string]bool{models.EventLeadCreated: true, models.EventCallStarted: true})
			require.NoError(t, err)
			require.Len(t, facts, 2)
			assert.Equal(t, rec.EventIDs, ids)

			onlyCreated, ids2, err := st.UnpublishedEventFacts(ctx, rec.EventIDs, leadCreated)
			require.NoError(t, err)
			require.Len(t, onlyCreated, 1, "facts only for the types asked for")
			assert.Equal(t, models.EventLeadCreated, onlyCreated[0].Event.Type)
			assert.Equal(t, rec.EventIDs, ids2, "every unpublished id all the same")
			assert.Equal(t, rec.LeadID, facts[0].Lead.ID)
			require.NotNil(t, facts[0].Call)
			assert.Equal(t, int64(2), facts[0].Call.CTMCallID)

			plan := []models.TriggerDelivery{store.NewTriggerDelivery(r, &facts[0].Event, "event:1")}
			start, err := st.FanOut(ctx, ids, plan)
			require.NoError(t, err)
			require.Len(t, start, 1)
			assert.Equal(t, models.TriggerPending, start[0].Status)
			assert.Regexp(t, `^msg_[0-9a-f]{24}$`, start[0].WebhookID)

			// Publishing again (the sweeper racing the fast path) adds
			// nothing, and still offers the unstarted delivery.
			again := []models.TriggerDelivery{store.NewTriggerDelivery(r, &facts[0].Event, "event:1")}
			start2, err := st.FanOut(ctx, ids, again)
			require.NoError(t, err)
			require.Len(t, start2, 1)
			assert.Equal(t, start[0].ID, start2[0].ID)
			assert.Equal(t, start[0].WebhookID, start2[0].WebhookID, "the first delivery's id stays")

			unpublished, err = st.UnpublishedEvents(ctx, time.Now().Add(time.Hour), 100)
			require.NoError(t, err)
			assert.Empty(t, unpublished)
			facts, ids, err = st.UnpublishedEventFacts(ctx, rec.EventIDs, leadCreated)
			require.NoError(t, err)
			assert.Empty(t, facts)
			assert.Empty(t, ids)

			undispatched, err := st.UndispatchedDeliveries(ctx, time.Now().Add(time.Hour), 10)
			require.NoError(t, err)
			require.Len(t, undispatched, 1)
			require.NoError(t, st.MarkTriggerDispatched(ctx, start[0].ID, 0))
			undispatched, err = st.UndispatchedDeliveries(ctx, time.Now().Add(time.Hour), 10)
			require.NoError(t, err)
			assert.Empty(t, undispatched)
		})
	}
}

func TestTriggerDeliveryLifecycle(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			ctx := context.Background()
			r := newRule(t, st, models.EventLeadCreated)
			s := ctm.Sample{AccountID: 7, CallID: 3, Phone: "+12395550173", Start: t0}
			rec := apply(t, st, delivery(t, models.KindCallStart, s.StartBody(), t0))
			facts, ids, err := st.UnpublishedEventFacts(ctx, rec.EventIDs, leadCreated)
			require.NoError(t, err)
			start, err := st.FanOut(ctx, ids, []models.TriggerDelivery{
				store.NewTriggerDelivery(r, &facts[0].Event, "event:x"),
			})
			require.NoError(t, err)
			id := start[0].ID

			_, err = st.ResendTriggerDelivery(ctx, id)
			assert.ErrorIs(t, err, store.ErrBusy, "a pending delivery cannot be resent")

			require.NoError(t, st.RecordTriggerAttempt(ctx, id, 0, store.TriggerAttempt{
				StatusCode: 503, Err: "destination answered 503", Status: models.TriggerRetrying,
			}))
			require.NoError(t, st.RecordTriggerAttempt(ctx, id, 0, store.TriggerAttempt{
				StatusCode: 204, Status: models.TriggerDelivered,
			}))
			d, err := st.GetTriggerDelivery(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, models.TriggerDelivered, d.Status)
			assert.Equal(t, 2, d.Attempts)
			assert.Equal(t, 204, d.LastStatusCode)
			assert.NotNil(t, d.DeliveredAt)

			require.NoError(t, st.FinishTriggerDelivery(ctx, id, 0, models.TriggerFailed, "late"))
			d, err = st.GetTriggerDelivery(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, models.TriggerDelivered, d.Status, "a delivered delivery stays delivered")

			d, err = st.ResendTriggerDelivery(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, 1, d.Resends)
			assert.Equal(t, models.TriggerPending, d.Status)
			assert.Nil(t, d.DispatchedAt)

			// The old run's late attempt is not the new run's business.
			require.NoError(t, st.RecordTriggerAttempt(ctx, id, 0, store.TriggerAttempt{
				StatusCode: 500, Status: models.TriggerRetrying,
			}))
			d, err = st.GetTriggerDelivery(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, models.TriggerPending, d.Status)
			assert.Equal(t, 2, d.Attempts)

			// 601 bytes, cut at 500 in the middle of an é: Postgres
			// refuses half a character.
			long := "x" + strings.Repeat("é", 300)
			require.NoError(t, st.FinishTriggerDelivery(ctx, id, 1, models.TriggerFailed, long))
			d, err = st.GetTriggerDelivery(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, models.TriggerFailed, d.Status)
			assert.LessOrEqual(t, len(d.LastError), 500)

			// An attempt that outlived the run's deadline is counted but
			// does not reopen the delivery.
			require.NoError(t, st.RecordTriggerAttempt(ctx, id, 1, store.TriggerAttempt{
				StatusCode: 500, Status: models.TriggerRetrying,
			}))
			d, err = st.GetTriggerDelivery(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, models.TriggerFailed, d.Status)
			assert.Equal(t, 3, d.Attempts)

			list, err := st.ListTriggerDeliveries(ctx,
				store.TriggerDeliveryFilter{RuleID: r.ID, Status: models.TriggerFailed})
			require.NoError(t, err)
			require.Len(t, list, 1)
			list, err = st.ListTriggerDeliveries(ctx, store.TriggerDeliveryFilter{LeadID: rec.LeadID + 1})
			require.NoError(t, err)
			assert.Empty(t, list)
		})
	}
}

func TestReserveSlot(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			ctx := context.Background()
			const dest = "https://sms.example.org/send"

			var slots []time.Time
			for range 3 {
				slot, booked, err := st.ReserveSlot(ctx, dest, time.Second, 5*time.Second)
				require.NoError(t, err)
				require.True(t, booked)
				slots = append(slots, slot)
			}
			for i := 1; i < len(slots); i++ {
				assert.GreaterOrEqual(t, slots[i].Sub(slots[i-1]), time.Second,
					"got slots %s apart, want at least 1s", slots[i].Sub(slots[i-1]))
			}

			// The next slot is 3s off: beyond a 2s horizon it is not booked.
			far, booked, err := st.ReserveSlot(ctx, dest, time.Second, 2*time.Second)
			require.NoError(t, err)
			assert.False(t, booked)
			near, booked, err := st.ReserveSlot(ctx, dest, time.Second, 5*time.Second)
			require.NoError(t, err)
			assert.True(t, booked)
			assert.Equal(t, far, near, "an unbooked slot stays free for the next taker")

			other, booked, err := st.ReserveSlot(ctx, "https://other.example.org/", time.Second, 0)
			require.NoError(t, err)
			assert.True(t, booked, "another destination has its own slots")
			assert.WithinDuration(t, time.Now(), other, 2*time.Second)
		})
	}
}

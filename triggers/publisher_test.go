package triggers_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/triggers"
)

// starter records the deliveries it is asked to start, failing while
// down is set.
type starter struct {
	mu      sync.Mutex
	down    bool
	started []models.TriggerDelivery
}

func (s *starter) StartDelivery(_ context.Context, d models.TriggerDelivery) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("temporal unreachable")
	}
	s.started = append(s.started, d)
	return nil
}

func (s *starter) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.started)
}

func recordStart(t *testing.T, st *store.Store, callID int64, phone string) store.CallRecord {
	t.Helper()
	s := ctm.Sample{AccountID: 7, CallID: callID, Phone: phone, Start: t0}
	c, err := ctm.Parse(s.StartBody())
	require.NoError(t, err)
	rec, err := st.RecordCall(context.Background(), store.CallDelivery{
		Kind: models.KindCallStart, Version: store.Version(models.KindCallStart, t0), Call: c, Phone: phone,
	})
	require.NoError(t, err)
	return rec
}

func TestPublisher(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			ctx := context.Background()
			rule := &models.TriggerRule{Name: "dialer", Event: models.EventLeadCreated,
				URL: "https://dialer.example.org/", Secret: triggers.NewSecret()}
			require.NoError(t, st.CreateRule(ctx, rule))
			other := &models.TriggerRule{Name: "scored", Event: models.EventCallScored,
				URL: "https://partner.example.org/", Secret: triggers.NewSecret()}
			require.NoError(t, st.CreateRule(ctx, other))

			s := &starter{}
			pub := &triggers.Publisher{Store: st, Starter: s}

			rec := recordStart(t, st, 1, "+12395550161")
			require.NoError(t, pub.Publish(ctx, rec.EventIDs))
			require.Equal(t, 1, s.count(), "lead.created matched one rule")
			assert.Equal(t, rule.ID, s.started[0].RuleID)
			unpublished, err := st.UnpublishedEvents(ctx, time.Now().Add(time.Hour), 10)
			require.NoError(t, err)
			assert.Empty(t, unpublished, "call.started, matching nothing, is published too")

			require.NoError(t, pub.Publish(ctx, rec.EventIDs))
			assert.Equal(t, 1, s.count(), "publishing again starts nothing")

			// Temporal is down: the delivery is recorded, not started.
			s.down = true
			rec = recordStart(t, st, 2, "+12395550162")
			assert.Error(t, pub.Publish(ctx, rec.EventIDs))
			s.down = false
			sweeper := &triggers.Sweeper{Publisher: pub, Interval: 10 * time.Millisecond}
			require.Eventually(t, func() bool {
				require.NoError(t, sweeper.Sweep(ctx))
				return s.count() == 2
			}, 5*time.Second, 20*time.Millisecond, "the sweeper starts the delivery")

			// The process died before publishing at all.
			rec = recordStart(t, st, 3, "+12395550163")
			require.Eventually(t, func() bool {
				require.NoError(t, sweeper.Sweep(ctx))
				return s.count() == 3
			}, 5*time.Second, 20*time.Millisecond, "the sweeper publishes the event")
			require.NoError(t, sweeper.Sweep(ctx))
			assert.Equal(t, 3, s.count(), "nothing starts twice")

			// In the background, at most limit at a time.
			bg := triggers.NewBackground(pub, 1, 5*time.Second)
			rec = recordStart(t, st, 4, "+12395550164")
			require.NoError(t, bg.Publish(ctx, rec.EventIDs))
			bg.Wait()
			assert.Equal(t, 4, s.count())
			full := triggers.NewBackground(pub, 0, time.Second)
			assert.ErrorIs(t, full.Publish(ctx, rec.EventIDs), triggers.ErrPublisherBusy)
		})
	}
}

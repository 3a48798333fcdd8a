package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
)

func TestSaveFetched(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			ctx := context.Background()
			fetched := func() *models.Delivery {
				return &models.Delivery{
					AccountID: 7, Kind: models.KindCallEnd, BodySHA256: "abc", CTMID: 42,
					Body: []byte(`{"id":42}`),
				}
			}

			first := fetched()
			dup, err := st.SaveFetched(ctx, first)
			require.NoError(t, err)
			assert.False(t, dup)
			assert.Equal(t, models.DeliveryDispatched, first.Status, "the relay leaves it alone")
			refs, err := st.ClaimDue(ctx, "relay", time.Minute, 10)
			require.NoError(t, err)
			assert.Empty(t, refs)

			again := fetched()
			dup, err = st.SaveFetched(ctx, again)
			require.NoError(t, err)
			assert.True(t, dup)
			assert.Equal(t, first.ID, again.ID)

			t.Run("a purged duplicate gets its body back", func(t *testing.T) {
				// Applying the delivery starts its retention clock.
				d := delivery(t, models.KindCallEnd, ctm.Sample{AccountID: 7, CallID: 42,
					Phone: "+12395550399"}.EndBody(), t0)
				d.DeliveryID = first.ID
				_, err := st.RecordCall(ctx, d)
				require.NoError(t, err)
				n, err := st.PurgeBodies(ctx, time.Now().Add(time.Hour))
				require.NoError(t, err)
				require.Equal(t, int64(1), n)

				dup, err := st.SaveFetched(ctx, fetched())
				require.NoError(t, err)
				assert.True(t, dup)
				stored, err := st.GetDelivery(ctx, first.ID)
				require.NoError(t, err)
				assert.JSONEq(t, `{"id":42}`, string(stored.Body))
			})
		})
	}
}

func TestRetryLaterCutsReasonsOnACharacter(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			ctx := context.Background()
			d := &models.Delivery{
				AccountID: 1, Kind: models.KindCallStart, BodySHA256: "cut", CTMID: 1,
				Body: []byte(`{"id":1}`),
			}
			_, err := st.SaveDelivery(ctx, d, "relay-a", time.Minute)
			require.NoError(t, err)

			reason := strings.Repeat("a", 499) + "é and more"
			require.NoError(t, st.RetryLater(ctx, d.ID, "relay-a", reason, time.Now()))
			got, err := st.GetDelivery(ctx, d.ID)
			require.NoError(t, err)
			assert.Equal(t, strings.Repeat("a", 499), got.LastError)
		})
	}
}

// clock is a settable time for a store under test.
type clock struct{ now atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}

func (c *clock) set(t time.Time)                 { c.now.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration)             { c.now.Add(int64(d)) }
func (c *clock) Now() time.Time                  { return time.Unix(0, c.now.Load()).UTC() }
func (c *clock) after(d time.Duration) time.Time { return c.Now().Add(d) }

func newDelivery(account int64, kind string, body []byte) *models.Delivery {
	sum := sha256.Sum256(body)
	c, err := ctm.Parse(body)
	if err != nil {
		panic(err)
	}
	return &models.Delivery{
		AccountID:  account,
		Kind:       kind,
		BodySHA256: hex.EncodeToString(sum[:]),
		CTMID:      c.ID,
		Body:       body,
		CTMTime:    "1700000000",
	}
}

func sampleBody(callID int64) []byte {
	s := ctm.Sample{AccountID: 7, CallID: callID, Phone: "+12395550171", Start: t0}
	return s.StartBody()
}

func save(t *testing.T, st *store.Store, d *models.Delivery, owner string) bool {
	t.Helper()
	dup, err := st.SaveDelivery(context.Background(), d, owner, 30*time.Second)
	require.NoError(t, err)
	return dup
}

func TestSaveDeliveryRecognisesRedelivery(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			first := newDelivery(7, models.KindCallStart, sampleBody(1))
			require.False(t, save(t, st, first, "relay-a"))
			require.NotZero(t, first.ID)
			assert.Equal(t, 1, first.Attempts, "stored leased to the relay that received it")
			assert.Equal(t, "relay-a", first.LeaseOwner)

			again := newDelivery(7, models.KindCallStart, sampleBody(1))
			assert.True(t, save(t, st, again, "relay-b"), "same account, kind and body")
			assert.Equal(t, first.ID, again.ID)
			assert.Equal(t, "relay-a", again.LeaseOwner, "the stored row is returned untouched")

			otherKind := newDelivery(7, models.KindCallEnd, sampleBody(1))
			assert.False(t, save(t, st, otherKind, ""))
			otherAccount := newDelivery(8, models.KindCallStart, sampleBody(1))
			assert.False(t, save(t, st, otherAccount, ""))
			assert.Empty(t, otherAccount.LeaseOwner, "no owner: left for any relay's poll")

			stats, err := st.InboxStats(context.Background())
			require.NoError(t, err)
			assert.Equal(t, int64(3), stats.Pending)
		})
	}
}

// Concurrent identical deliveries store one row; every caller learns its
// id, and all but one hear it was a duplicate.
func TestSaveDeliveryConcurrentRedeliveries(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			var wg sync.WaitGroup
			var fresh atomic.Int32
			ids := make([]int64, 20)
			errs := make([]error, len(ids))
			for i := range ids {
				wg.Add(1)
				go func() {
					defer wg.Done()
					d := newDelivery(7, models.KindCallStart, sampleBody(2))
					dup, err := st.SaveDelivery(context.Background(), d, "", time.Second)
					if !dup && err == nil {
						fresh.Add(1)
					}
					ids[i], errs[i] = d.ID, err
				}()
			}
			wg.Wait()
			for i := range ids {
				require.NoError(t, errs[i])
				assert.Equal(t, ids[0], ids[i])
			}
			assert.Equal(t, int32(1), fresh.Load(), "exactly one caller stored it")
		})
	}
}

// Several relays, each with its own connection pool as separate processes
// have, claim one backlog side by side: every delivery is claimed once.
func TestClaimDueConcurrentClaimers(t *testing.T) {
	const backlog, claimers, batch = 300, 6, 7
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			for i := range backlog {
				save(t, st, newDelivery(7, models.KindCallStart, sampleBody(int64(1000+i))), "")
			}

			var mu sync.Mutex
			claimedBy := map[int64][]string{}
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make(chan error, claimers)
			for i := range claimers {
				owner := fmt.Sprintf("relay-%d", i)
				own := testenv.Store(t, db.URL)
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					for {
						refs, err := own.ClaimDue(context.Background(), owner, time.Minute, batch)
						if err != nil {
							errs <- err
							return
						}
						if len(refs) == 0 {
							return
						}
						mu.Lock()
						for _, r := range refs {
							claimedBy[r.ID] = append(claimedBy[r.ID], owner)
						}
						mu.Unlock()
					}
				}()
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}

			assert.Len(t, claimedBy, backlog, "every delivery claimed")
			for id, owners := range claimedBy {
				assert.Len(t, owners, 1, "delivery %d claimed by %v", id, owners)
			}
		})
	}
}

func TestClaimDueLeases(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			ctx := context.Background()
			st := testenv.Store(t, db.URL)
			clk := newClock(t0)
			st.SetClock(clk.Now)

			d := newDelivery(7, models.KindCallStart, sampleBody(3))
			save(t, st, d, "relay-a")

			refs, err := st.ClaimDue(ctx, "relay-b", 30*time.Second, 10)
			require.NoError(t, err)
			assert.Empty(t, refs, "a live lease keeps the row its owner's")

			clk.add(31 * time.Second)
			refs, err = st.ClaimDue(ctx, "relay-b", 30*time.Second, 10)
			require.NoError(t, err)
			require.Len(t, refs, 1, "an expired lease (its relay died) frees the row")
			assert.Equal(t, d.ID, refs[0].ID)
			assert.Equal(t, 2, refs[0].Attempts)
			assert.Equal(t, clk.after(30*time.Second), refs[0].LeaseUntil.UTC())

			// The first owner wakes up late: its writes no longer apply.
			require.NoError(t, st.MarkDispatched(ctx, d.ID, "relay-a"))
			require.NoError(t, st.RetryLater(ctx, d.ID, "relay-a", "late", clk.Now()))
			got, err := st.GetDelivery(ctx, d.ID)
			require.NoError(t, err)
			assert.Equal(t, models.DeliveryPending, got.Status)
			assert.Equal(t, "relay-b", got.LeaseOwner)
			assert.Empty(t, got.LastError)

			require.NoError(t, st.RetryLater(ctx, d.ID, "relay-b", "temporal unreachable", clk.after(10*time.Second)))
			got, err = st.GetDelivery(ctx, d.ID)
			require.NoError(t, err)
			assert.Empty(t, got.LeaseOwner)
			assert.Nil(t, got.LeaseUntil)
			assert.Equal(t, "temporal unreachable", got.LastError)

			refs, err = st.ClaimDue(ctx, "relay-a", 30*time.Second, 10)
			require.NoError(t, err)
			assert.Empty(t, refs, "not due before its next attempt")

			clk.add(11 * time.Second)
			refs, err = st.ClaimDue(ctx, "relay-a", 30*time.Second, 10)
			require.NoError(t, err)
			require.Len(t, refs, 1)
			require.NoError(t, st.MarkDispatched(ctx, d.ID, "relay-a"))
			got, err = st.GetDelivery(ctx, d.ID)
			require.NoError(t, err)
			assert.Equal(t, models.DeliveryDispatched, got.Status)
			assert.Empty(t, got.LastError)
			assert.NotNil(t, got.DispatchedAt)

			refs, err = st.ClaimDue(ctx, "relay-b", 30*time.Second, 10)
			require.NoError(t, err)
			assert.Empty(t, refs, "a dispatched delivery is never claimed again")
		})
	}
}

func TestClaimDueOldestFirst(t *testing.T) {
	st := testenv.Store(t, testenv.SQLiteURL(t))
	var want []int64
	for i := range 5 {
		d := newDelivery(7, models.KindCallStart, sampleBody(int64(50+i)))
		save(t, st, d, "")
		want = append(want, d.ID)
	}
	refs, err := st.ClaimDue(context.Background(), "relay-a", time.Minute, 3)
	require.NoError(t, err)
	var got []int64
	for _, r := range refs {
		got = append(got, r.ID)
	}
	assert.Equal(t, want[:3], got)
}

// process runs the first step the workflow runs for a delivery, which
// marks it processed and starts its retention clock.
func process(t *testing.T, st *store.Store, d *models.Delivery) {
	t.Helper()
	cd := delivery(t, d.Kind, d.Body, t0)
	cd.DeliveryID = d.ID
	_, err := st.RecordCall(context.Background(), cd)
	require.NoError(t, err)
}

func TestPurgeBodies(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			ctx := context.Background()
			st := testenv.Store(t, db.URL)
			clk := newClock(t0)
			st.SetClock(clk.Now)

			done := newDelivery(7, models.KindCallStart, sampleBody(60))
			waiting := newDelivery(7, models.KindCallStart, sampleBody(61))
			save(t, st, done, "")
			save(t, st, waiting, "")
			process(t, st, done)
			processedAt := clk.Now()

			n, err := st.PurgeBodies(ctx, processedAt)
			require.NoError(t, err)
			assert.Zero(t, n, "not past retention yet")

			clk.add(time.Hour)
			n, err = st.PurgeBodies(ctx, processedAt.Add(time.Minute))
			require.NoError(t, err)
			assert.Equal(t, int64(1), n)

			got, err := st.GetDelivery(ctx, done.ID)
			require.ErrorIs(t, err, store.ErrPurged)
			assert.Nil(t, got.Body)
			require.NotNil(t, got.PurgedAt)
			assert.Equal(t, clk.Now(), got.PurgedAt.UTC())
			assert.ErrorIs(t, st.ReplayDelivery(ctx, done.ID), store.ErrPurged)

			got, err = st.GetDelivery(ctx, waiting.ID)
			require.NoError(t, err, "an unprocessed delivery keeps its body")
			assert.Equal(t, waiting.Body, got.Body)

			again := newDelivery(7, models.KindCallStart, sampleBody(60))
			assert.True(t, save(t, st, again, ""), "a purged delivery is still recognised when CTM repeats it")
			assert.Equal(t, done.ID, again.ID)

			n, err = st.PurgeBodies(ctx, clk.Now())
			require.NoError(t, err)
			assert.Zero(t, n, "purging twice purges nothing more")
		})
	}
}

func TestInboxStatsAndReplay(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			ctx := context.Background()
			st := testenv.Store(t, db.URL)
			clk := newClock(t0)
			st.SetClock(clk.Now)

			stats, err := st.InboxStats(ctx)
			require.NoError(t, err)
			assert.Zero(t, stats.Pending)
			assert.True(t, stats.OldestPending.IsZero())

			old := newDelivery(7, models.KindCallStart, sampleBody(70))
			save(t, st, old, "")
			clk.add(time.Minute)
			young := newDelivery(7, models.KindCallStart, sampleBody(71))
			save(t, st, young, "")

			stats, err = st.InboxStats(ctx)
			require.NoError(t, err)
			assert.Equal(t, int64(2), stats.Pending)
			assert.Equal(t, t0, stats.OldestPending)

			refs, err := st.ClaimDue(ctx, "relay-a", time.Minute, 1)
			require.NoError(t, err)
			require.Len(t, refs, 1)
			require.NoError(t, st.MarkDispatched(ctx, refs[0].ID, "relay-a"))
			stats, err = st.InboxStats(ctx)
			require.NoError(t, err)
			assert.Equal(t, int64(1), stats.Pending)
			assert.Equal(t, t0.Add(time.Minute), stats.OldestPending)

			require.NoError(t, st.ReplayDelivery(ctx, old.ID))
			got, err := st.GetDelivery(ctx, old.ID)
			require.NoError(t, err)
			assert.Equal(t, models.DeliveryPending, got.Status)
			assert.Empty(t, got.LeaseOwner)
			assert.ErrorIs(t, st.ReplayDelivery(ctx, 999999), store.ErrNotFound)

			pending, err := st.ListDeliveries(ctx, store.DeliveryFilter{Status: models.DeliveryPending})
			require.NoError(t, err)
			require.Len(t, pending, 2)
			assert.Equal(t, young.ID, pending[0].ID, "newest first")
			assert.Nil(t, pending[0].Body, "listing never loads bodies")

			page, err := st.ListDeliveries(ctx, store.DeliveryFilter{AfterID: young.ID, Limit: 1})
			require.NoError(t, err)
			require.Len(t, page, 1)
			assert.Equal(t, old.ID, page[0].ID)
		})
	}
}

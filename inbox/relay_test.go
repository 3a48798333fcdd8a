package inbox_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/inbox"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
)

// tracker records every dispatch of the relays of a test, and notices a
// delivery handed over by two relays at the same time.
type tracker struct {
	mu       sync.Mutex
	inflight map[int64]string
	overlaps []string
	calls    map[int64]int
	done     map[int64]int
}

func newTracker() *tracker {
	return &tracker{inflight: map[int64]string{}, calls: map[int64]int{}, done: map[int64]int{}}
}

// dispatcher is one relay's Dispatcher; do decides each dispatch's fate.
func (tr *tracker) dispatcher(owner string, do dispatchFunc) inbox.Dispatcher {
	return dispatchFunc(func(ctx context.Context, ref store.DeliveryRef) error {
		tr.mu.Lock()
		if other, busy := tr.inflight[ref.ID]; busy {
			tr.overlaps = append(tr.overlaps, fmt.Sprintf("delivery %d: %s while %s", ref.ID, owner, other))
		}
		tr.inflight[ref.ID] = owner
		tr.calls[ref.ID]++
		tr.mu.Unlock()

		err := do(ctx, ref)

		tr.mu.Lock()
		delete(tr.inflight, ref.ID)
		if err == nil {
			tr.done[ref.ID]++
		}
		tr.mu.Unlock()
		return err
	})
}

func (tr *tracker) callsOf(id int64) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.calls[id]
}

func (tr *tracker) doneOf(id int64) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.done[id]
}

type dispatchFunc func(ctx context.Context, ref store.DeliveryRef) error

func (f dispatchFunc) Dispatch(ctx context.Context, ref store.DeliveryRef) error { return f(ctx, ref) }

func succeed(context.Context, store.DeliveryRef) error { return nil }

// sleep waits d, or until ctx ends as a Temporal call would.
func sleep(d time.Duration) func(context.Context, store.DeliveryRef) error {
	return func(ctx context.Context, _ store.DeliveryRef) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// run starts r until the test ends.
func run(t *testing.T, r *inbox.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				assert.NoError(t, err)
			case <-time.After(20 * time.Second):
				t.Error("relay did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

var callIDs atomic.Int64

func newDelivery(t *testing.T) *models.Delivery {
	t.Helper()
	s := ctm.Sample{AccountID: 7, CallID: 5000 + callIDs.Add(1), Phone: "+12395550171"}
	body := s.StartBody()
	sum := sha256.Sum256(body)
	return &models.Delivery{
		AccountID:  7,
		Kind:       models.KindCallStart,
		BodySHA256: hex.EncodeToString(sum[:]),
		CTMID:      s.CallID,
		Body:       body,
	}
}

func accept(t *testing.T, r *inbox.Relay, n int) []*models.Delivery {
	t.Helper()
	var out []*models.Delivery
	for range n {
		d := newDelivery(t)
		dup, err := r.Accept(context.Background(), d)
		require.NoError(t, err)
		require.False(t, dup)
		out = append(out, d)
	}
	return out
}

func status(t *testing.T, st *store.Store, id int64) *models.Delivery {
	t.Helper()
	d, err := st.GetDelivery(context.Background(), id)
	require.NoError(t, err)
	return d
}

func waitDispatched(t *testing.T, st *store.Store, ds []*models.Delivery) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, d := range ds {
			if status(t, st, d.ID).Status != models.DeliveryDispatched {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "every delivery dispatched")
}

func TestRelayDispatchesWhatItAccepts(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			tr := newTracker()
			r := inbox.New(st, tr.dispatcher("a", succeed), inbox.Options{Owner: "a"})
			run(t, r)

			ds := accept(t, r, 20)
			waitDispatched(t, st, ds)

			again := *ds[0]
			again.ID = 0
			dup, err := r.Accept(context.Background(), &again)
			require.NoError(t, err)
			assert.True(t, dup)
			assert.Equal(t, ds[0].ID, again.ID)

			for _, d := range ds {
				assert.Equal(t, 1, tr.callsOf(d.ID), "delivery %d dispatched once", d.ID)
				got := status(t, st, d.ID)
				assert.Equal(t, 1, got.Attempts)
				assert.Empty(t, got.LeaseOwner)
			}
		})
	}
}

func TestRelayRetriesWhileDispatchFails(t *testing.T) {
	st := testenv.Store(t, testenv.SQLiteURL(t))
	tr := newTracker()
	var down atomic.Bool
	down.Store(true)
	var probes atomic.Int32
	r := inbox.New(st, tr.dispatcher("a", func(context.Context, store.DeliveryRef) error {
		if down.Load() {
			probes.Add(1)
			return errors.New("temporal unreachable")
		}
		return nil
	}), inbox.Options{Owner: "a", MaxBackoff: 50 * time.Millisecond, PollInterval: 10 * time.Millisecond})
	run(t, r)

	ds := accept(t, r, 10)
	require.Eventually(t, func() bool {
		if probes.Load() < 20 {
			return false
		}
		for _, d := range ds {
			if status(t, st, d.ID).LastError == "" {
				return false
			}
		}
		return true
	}, 15*time.Second, 10*time.Millisecond, "the relay keeps trying, and says why each delivery waits")
	for _, d := range ds {
		got := status(t, st, d.ID)
		assert.Equal(t, models.DeliveryPending, got.Status)
		assert.Equal(t, "temporal unreachable", got.LastError)
	}

	down.Store(false)
	waitDispatched(t, st, ds)
	for _, d := range ds {
		assert.Equal(t, 1, tr.doneOf(d.ID), "delivery %d handed over once", d.ID)
		got := status(t, st, d.ID)
		assert.Empty(t, got.LastError)
		assert.Greater(t, got.Attempts, 1)
	}
}

// While Temporal is unreachable the relay pauses; what waits in its queue
// goes back to the inbox at once instead of each holding a worker for a
// whole dispatch timeout, and is claimed again after the pause.
func TestRelayPutsQueuedDeliveriesBackWhilePaused(t *testing.T) {
	st := testenv.Store(t, testenv.SQLiteURL(t))
	tr := newTracker()
	var calls atomic.Int32
	var mu sync.Mutex
	attempts := map[int64]int{}
	var first atomic.Int64
	r := inbox.New(st, tr.dispatcher("a", func(ctx context.Context, ref store.DeliveryRef) error {
		if calls.Add(1) == 1 {
			first.Store(ref.ID)
			time.Sleep(100 * time.Millisecond)
			return errors.New("temporal unreachable")
		}
		mu.Lock()
		attempts[ref.ID] = ref.Attempts
		mu.Unlock()
		return nil
	}), inbox.Options{Owner: "a", Workers: 1, MaxBackoff: time.Minute, PollInterval: 10 * time.Millisecond})
	run(t, r)

	ds := accept(t, r, 5)
	waitDispatched(t, st, ds)
	mu.Lock()
	defer mu.Unlock()
	for _, d := range ds {
		if d.ID == first.Load() {
			continue
		}
		assert.Equal(t, 1, tr.callsOf(d.ID), "delivery %d", d.ID)
		assert.Equal(t, 2, attempts[d.ID], "delivery %d was put back, then claimed again", d.ID)
	}
}

// A dispatch that runs into its timeout, as one does while Temporal is
// unreachable, must still give its lease back and say why.
func TestRelayReschedulesADispatchThatTimedOut(t *testing.T) {
	st := testenv.Store(t, testenv.SQLiteURL(t))
	tr := newTracker()
	second := make(chan store.DeliveryRef, 1)
	var calls atomic.Int32
	r := inbox.New(st, tr.dispatcher("a", func(ctx context.Context, ref store.DeliveryRef) error {
		if calls.Add(1) == 1 {
			<-ctx.Done()
			return ctx.Err()
		}
		second <- ref
		return nil
	}), inbox.Options{Owner: "a", DispatchTimeout: 100 * time.Millisecond, PollInterval: 10 * time.Millisecond})
	run(t, r)

	d := accept(t, r, 1)[0]
	select {
	case ref := <-second:
		assert.Equal(t, d.ID, ref.ID)
		assert.Equal(t, 2, ref.Attempts)
	case <-time.After(5 * time.Second):
		t.Fatal("the delivery was not tried again: its lease was never given back")
	}
	waitDispatched(t, st, []*models.Delivery{d})
}

// Relays share the inbox. A delivery that waited in one relay's queue past
// its lease may have been claimed by another relay meanwhile; the first
// must then leave it alone, or both hand it over at once.
func TestRelaysNeverDispatchOneDeliveryAtOnce(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			tr := newTracker()
			opts := inbox.Options{
				Lease:           600 * time.Millisecond,
				DispatchTimeout: 300 * time.Millisecond,
				PollInterval:    20 * time.Millisecond,
			}
			// Relay a is slow: one worker, 250 ms a dispatch, so what it
			// leased waits in its queue past the lease.
			a := opts
			a.Owner, a.Workers = "a", 1
			slow := inbox.New(st, tr.dispatcher("a", sleep(250*time.Millisecond)), a)
			run(t, slow)
			ds := accept(t, slow, 8)

			b := opts
			b.Owner, b.Workers = "b", 4
			run(t, inbox.New(testenv.Store(t, db.URL), tr.dispatcher("b", sleep(250*time.Millisecond)), b))

			waitDispatched(t, st, ds)
			tr.mu.Lock()
			defer tr.mu.Unlock()
			assert.Empty(t, tr.overlaps)
		})
	}
}

func TestRelayStopGivesBackWhatItHasNotStarted(t *testing.T) {
	st := testenv.Store(t, testenv.SQLiteURL(t))
	tr := newTracker()
	started := make(chan int64, 10)
	release := make(chan struct{})
	r := inbox.New(st, tr.dispatcher("a", func(_ context.Context, ref store.DeliveryRef) error {
		started <- ref.ID
		<-release
		return nil
	}), inbox.Options{Owner: "a", Workers: 1})
	stop := run(t, r)

	ds := accept(t, r, 4)
	inFlight := <-started
	stopped := make(chan struct{})
	go func() {
		stop()
		close(stopped)
	}()
	// The queued leases come back while the dispatch in flight still runs.
	require.Eventually(t, func() bool {
		for _, d := range ds {
			if d.ID != inFlight && status(t, st, d.ID).LeaseOwner != "" {
				return false
			}
		}
		return true
	}, 5*time.Second, 5*time.Millisecond, "queued leases given back")
	close(release)
	<-stopped

	for _, d := range ds {
		got := status(t, st, d.ID)
		if d.ID == inFlight {
			assert.Equal(t, models.DeliveryDispatched, got.Status, "the dispatch in flight finishes")
			continue
		}
		assert.Equal(t, models.DeliveryPending, got.Status, "delivery %d", d.ID)
		assert.Empty(t, got.LeaseOwner, "delivery %d", d.ID)
		assert.Zero(t, tr.callsOf(d.ID), "nothing new starts once stopping")
	}
}

func TestRelayLeavesNewDeliveriesToThePollWhilePaused(t *testing.T) {
	st := testenv.Store(t, testenv.SQLiteURL(t))
	tr := newTracker()
	var calls atomic.Int32
	r := inbox.New(st, tr.dispatcher("a", func(context.Context, store.DeliveryRef) error {
		if calls.Add(1) == 1 {
			return errors.New("temporal unreachable")
		}
		return nil
	}), inbox.Options{Owner: "a", MaxBackoff: time.Minute})
	run(t, r)

	first := accept(t, r, 1)[0]
	require.Eventually(t, func() bool {
		return status(t, st, first.ID).LastError != ""
	}, 5*time.Second, 2*time.Millisecond, "the first dispatch failed")

	d := accept(t, r, 1)[0]
	assert.Empty(t, d.LeaseOwner, "a paused relay does not lease new deliveries to itself")
	waitDispatched(t, st, []*models.Delivery{first, d})
}

func TestRelayPurgesBodiesPastRetention(t *testing.T) {
	st := testenv.Store(t, testenv.SQLiteURL(t))
	r := inbox.New(st, dispatchFunc(succeed), inbox.Options{
		Retention:     time.Millisecond,
		PurgeInterval: 10 * time.Millisecond,
	})
	d := newDelivery(t)
	_, err := st.SaveDelivery(context.Background(), d, "", time.Minute)
	require.NoError(t, err)
	kept := newDelivery(t)
	_, err = st.SaveDelivery(context.Background(), kept, "", time.Minute)
	require.NoError(t, err)

	c, err := ctm.Parse(d.Body)
	require.NoError(t, err)
	_, err = st.RecordCall(context.Background(), store.CallDelivery{
		DeliveryID: d.ID, Kind: d.Kind, Call: c, Phone: "+12395550171",
	})
	require.NoError(t, err)

	run(t, r)
	require.Eventually(t, func() bool {
		_, err := st.GetDelivery(context.Background(), d.ID)
		return errors.Is(err, store.ErrPurged)
	}, 5*time.Second, 10*time.Millisecond, "the processed body purged")
	assert.NotNil(t, status(t, st, kept.ID).Body, "an unprocessed body is kept")
}

// Dispatches running side by side all fail when Temporal goes away; that
// is one failure of the relay, and must not stretch its pause as if the
// relay had probed a dozen times. Once Temporal answers, the backlog
// moves within a short pause, not the longest.
func TestRelayCountsSideBySideFailuresOnce(t *testing.T) {
	st := testenv.Store(t, testenv.SQLiteURL(t))
	tr := newTracker()
	var failing atomic.Bool
	failing.Store(true)
	var failed atomic.Int32
	gate := make(chan struct{})
	r := inbox.New(st, tr.dispatcher("a", func(ctx context.Context, _ store.DeliveryRef) error {
		if !failing.Load() {
			return nil
		}
		<-gate
		failed.Add(1)
		return errors.New("temporal unreachable")
	}), inbox.Options{Owner: "a", Workers: 12, MaxBackoff: time.Minute, PollInterval: 10 * time.Millisecond})
	run(t, r)

	ds := accept(t, r, 12)
	require.Eventually(t, func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.inflight) == 12
	}, 5*time.Second, 5*time.Millisecond, "twelve dispatches side by side")
	close(gate)
	require.Eventually(t, func() bool { return failed.Load() == 12 }, 5*time.Second, 5*time.Millisecond)
	failing.Store(false)

	// Twelve counted failures would pause the relay for the full minute.
	waitDispatched(t, st, ds)
}

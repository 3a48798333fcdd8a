// Package inbox keeps the promise made to CTM: once a webhook is answered
// 2xx it is stored, and it will reach its workflow. Accept stores a
// delivery before the answer; the Relay then hands it to Temporal, retrying
// with backoff for as long as Temporal is unreachable.
//
// Several webhook replicas may share one database. Each relay dispatches
// what it received itself (the row is stored already leased to it), and
// polls for the rest: deliveries whose dispatch failed, or whose relay
// died holding the lease.
package inbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/ctmflow/ctmflow/logging"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
)

// Dispatcher hands one delivery to its workflow.
type Dispatcher interface {
	Dispatch(ctx context.Context, ref store.DeliveryRef) error
}

// Options tune the relay. Zero values take the defaults given.
type Options struct {
	// Owner names this relay in leases. Default host-pid-random.
	Owner string
	// Workers is how many dispatches run at once. Default 16.
	Workers int
	// Lease is how long a claimed delivery stays this relay's before
	// another may take it: also how long a delivery waits when the relay
	// holding it dies. Default 30s.
	Lease time.Duration
	// DispatchTimeout bounds one SignalWithStart. A dispatch starts only
	// while at least DispatchTimeout plus a tenth of the lease is left of
	// its lease, so that it ends before another relay may claim the
	// delivery. Default 10s, or a third of Lease when that is shorter;
	// a value leaving no such margin is replaced by the default.
	DispatchTimeout time.Duration
	// PollInterval is how often the relay looks for due deliveries it did
	// not receive itself. Default 1s.
	PollInterval time.Duration
	// Batch caps one poll's claim. Default 100.
	Batch int
	// MaxBackoff caps the wait between attempts of one delivery, and the
	// pause of the whole relay while Temporal is unreachable: the longest
	// a backlog waits once Temporal is back. Default 10s.
	MaxBackoff time.Duration
	// Retention is how long a processed delivery keeps its raw body (PHI)
	// before it is purged. 0 keeps bodies forever. Default set by config.
	Retention time.Duration
	// PurgeInterval is how often bodies past retention are purged.
	// Default 1h.
	PurgeInterval time.Duration
	// Logger receives the relay's log lines. Default discards.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Owner == "" {
		host, _ := os.Hostname()
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		o.Owner = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.DispatchTimeout <= 0 || o.DispatchTimeout+o.Lease/10 >= o.Lease {
		o.DispatchTimeout = min(10*time.Second, o.Lease/3)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.PurgeInterval <= 0 {
		o.PurgeInterval = time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Relay stores deliveries and hands them to their workflows.
type Relay struct {
	store      *store.Store
	dispatcher Dispatcher
	opts       Options
	log        *slog.Logger

	work chan store.DeliveryRef
	wake chan struct{}

	mu          sync.Mutex
	running     bool
	pausedAt    time.Time
	pausedUntil time.Time
	failures    int
	// lastFailure is why the relay is paused, for the deliveries it
	// puts back while it is.
	lastFailure string
}

// New returns a relay; Run starts it.
func New(st *store.Store, d Dispatcher, opts Options) *Relay {
	opts = opts.withDefaults()
	return &Relay{
		store:      st,
		dispatcher: d,
		opts:       opts,
		log:        opts.Logger,
		// The queue holds what this relay has leased and not dispatched
		// yet; a few rounds of workers is enough to absorb a burst.
		work: make(chan store.DeliveryRef, opts.Workers*8),
		wake: make(chan struct{}, 1),
	}
}

// Accept stores a delivery and queues it for dispatch. It returns once the
// row is committed: only then may CTM be answered 2xx. A redelivery of a
// stored webhook returns duplicate=true and is not dispatched again.
func (r *Relay) Accept(ctx context.Context, d *models.Delivery) (duplicate bool, err error) {
	owner := ""
	if r.canTakeLocally() {
		owner = r.opts.Owner
	}
	dup, err := r.store.SaveDelivery(ctx, d, owner, r.opts.Lease)
	if err != nil || dup || owner == "" {
		return dup, err
	}
	if !r.enqueue(store.Ref(d)) {
		// The queue filled or the relay stopped since the check: give the
		// lease back so the next poll, here or on another replica,
		// takes it.
		r.release(d.ID, "relay busy")
	}
	return false, nil
}

// enqueue queues a leased delivery unless the relay has stopped, under
// the lock that Run takes to stop, so nothing is queued after the final
// drain.
func (r *Relay) enqueue(ref store.DeliveryRef) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.running {
		return false
	}
	select {
	case r.work <- ref:
		return true
	default:
		return false
	}
}

// canTakeLocally says whether a new delivery should be leased to this
// relay: it runs, is not paused for an unreachable Temporal, and has room.
func (r *Relay) canTakeLocally() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running && time.Now().After(r.pausedUntil) && len(r.work) < cap(r.work)
}

// Run dispatches until ctx ends. It then gives back at once the leases of
// what it had not started, so that another relay can take them, and waits
// for the dispatches in flight.
func (r *Relay) Run(ctx context.Context) error {
	r.mu.Lock()
	r.running = true
	r.mu.Unlock()

	var wg sync.WaitGroup
	for range r.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.purgeLoop(ctx)
	}()

	r.pollLoop(ctx)

	r.mu.Lock()
	r.running = false
	r.mu.Unlock()
	for {
		select {
		case ref := <-r.work:
			r.release(ref.ID, "relay stopped")
			continue
		default:
		}
		break
	}
	wg.Wait()
	return nil
}

func (r *Relay) pollLoop(ctx context.Context) {
	ticker := time.NewTicker(r.opts.PollInterval)
	defer ticker.Stop()
	for {
		r.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-r.wake:
		}
	}
}

// Wake makes the relay poll now, e.g. after a replay.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Relay) poll(ctx context.Context) {
	_, _, paused := r.paused()
	room := min(cap(r.work)-len(r.work), r.opts.Batch)
	if paused || room <= 0 || ctx.Err() != nil {
		return
	}

	// The claim does not end with the relay's context: cancelled after
	// the rows were leased but before they were read back, it would leave
	// them stranded until their lease ran out. The loop below gives them
	// back instead.
	cctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	refs, err := r.store.ClaimDue(cctx, r.opts.Owner, r.opts.Lease, room)
	cancel()
	if err != nil {
		r.log.Warn("claiming due deliveries", logging.KeyError, err)
		return
	}
	for _, ref := range refs {
		select {
		case r.work <- ref:
		case <-ctx.Done():
			r.release(ref.ID, "relay stopped")
		}
	}
}

func (r *Relay) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ref := <-r.work:
			if ctx.Err() != nil {
				r.release(ref.ID, "relay stopped")
				return
			}
			r.dispatch(ref)
		}
	}
}

// dispatch hands one delivery over. It deliberately does not use the
// relay's context: a dispatch begun before shutdown should finish, or its
// lease would keep the delivery waiting for another relay.
func (r *Relay) dispatch(ref store.DeliveryRef) {
	// A reference can wait in the queue past its lease when dispatches
	// are slow, and by then another relay may have claimed the delivery.
	// Start only a dispatch whose timeout ends before the lease does, and
	// leave the rest untouched: the lease runs out and a poll claims it.
	if time.Until(ref.LeaseUntil) < r.opts.DispatchTimeout+r.opts.Lease/10 {
		r.log.Warn("lease too short to dispatch, leaving the delivery to the next claim",
			logging.KeyDeliveryID, ref.ID, logging.KeyKind, ref.Kind)
		return
	}
	// While Temporal is unreachable, a queued delivery goes back to the
	// inbox at once rather than holding a worker for a whole timeout.
	if until, reason, paused := r.paused(); paused {
		r.reschedule(ref.ID, reason, until)
		return
	}

	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.DispatchTimeout)
	err := r.dispatcher.Dispatch(ctx, ref)
	cancel()

	// The bookkeeping has a context of its own: a dispatch that ran into
	// its timeout has spent the one above, and must still give back its
	// lease and say why.
	if err == nil {
		r.succeeded()
		wctx, wcancel := context.WithTimeout(context.Background(), storeTimeout)
		defer wcancel()
		if err := r.store.MarkDispatched(wctx, ref.ID, r.opts.Owner); err != nil {
			// The workflow has it; a second dispatch after the lease
			// expires is harmless, since workflows apply idempotently.
			r.log.Warn("marking delivery dispatched", logging.KeyDeliveryID, ref.ID, logging.KeyError, err)
		}
		return
	}

	reason := errorReason(err)
	pause := r.failed(started, reason)
	next := time.Now().Add(backoff(ref.Attempts, r.opts.MaxBackoff))
	r.log.Warn("dispatching delivery failed, will retry",
		logging.KeyDeliveryID, ref.ID, logging.KeyKind, ref.Kind, logging.KeyAttempt, ref.Attempts,
		"retry_at", next.UTC().Format(time.RFC3339Nano), "relay_paused_for", pause.String(),
		logging.KeyError, err)
	r.reschedule(ref.ID, reason, next)
}

// storeTimeout bounds the relay's own writes to the inbox.
const storeTimeout = 5 * time.Second

func (r *Relay) reschedule(id int64, reason string, at time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := r.store.RetryLater(ctx, id, r.opts.Owner, reason, at); err != nil {
		r.log.Warn("rescheduling delivery", logging.KeyDeliveryID, id, logging.KeyError, err)
	}
}

// succeeded and failed keep the relay-wide pause: when Temporal is down
// every dispatch fails, and hammering it helps no one. The pause doubles
// with each consecutive failure up to MaxBackoff; one success lifts it.
//
// Only a dispatch begun after the relay last paused counts: those running
// side by side when Temporal went away fail together, and are one failure
// of the relay, not a dozen doublings of its pause.
func (r *Relay) succeeded() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = 0
	r.pausedUntil = time.Time{}
}

func (r *Relay) failed(started time.Time, reason string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastFailure = reason
	now := time.Now()
	if started.Before(r.pausedAt) {
		return max(r.pausedUntil.Sub(now), 0)
	}
	r.failures++
	pause := backoff(r.failures, r.opts.MaxBackoff)
	r.pausedAt, r.pausedUntil = now, now.Add(pause)
	return pause
}

// paused says whether the relay waits out a failure, until when and why.
func (r *Relay) paused() (time.Time, string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pausedUntil, r.lastFailure, time.Now().Before(r.pausedUntil)
}

// backoff is 250 ms doubled per attempt, capped, with ±20 % jitter so that
// a backlog does not retry in lockstep.
func backoff(attempt int, maxWait time.Duration) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := float64(250*time.Millisecond) * math.Pow(2, float64(min(attempt-1, 30)))
	d = math.Min(d, float64(maxWait))
	return time.Duration(d * (0.8 + 0.4*mrand.Float64()))
}

// release gives a delivery's lease back, due at once.
func (r *Relay) release(id int64, reason string) {
	r.reschedule(id, reason, time.Now())
}

func (r *Relay) purgeLoop(ctx context.Context) {
	if r.opts.Retention <= 0 {
		return
	}
	ticker := time.NewTicker(r.opts.PurgeInterval)
	defer ticker.Stop()
	for {
		n, err := r.store.PurgeBodies(ctx, time.Now().Add(-r.opts.Retention))
		switch {
		case err != nil && ctx.Err() == nil:
			r.log.Warn("purging delivery bodies", logging.KeyError, err)
		case n > 0:
			r.log.Info("purged delivery bodies past retention", logging.KeyCount, n)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// errorReason is what ops see of a failed dispatch. Dispatch errors come
// from Temporal's client and carry workflow ids, never PHI.
func errorReason(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "temporal did not answer in time"
	}
	return err.Error()
}

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
	// another may take it. Default 30s: far above a dispatch's timeout.
	Lease time.Duration
	// DispatchTimeout bounds one SignalWithStart. Default 10s.
	DispatchTimeout time.Duration
	// PollInterval is how often the relay looks for due deliveries it did
	// not receive itself. Default 1s.
	PollInterval time.Duration
	// Batch caps one poll's claim. Default 100.
	Batch int
	// MaxBackoff caps the wait between attempts of one delivery, and the
	// pause of the whole relay while Temporal is unreachable. Default 30s.
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
	if o.DispatchTimeout <= 0 {
		o.DispatchTimeout = 10 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
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
	pausedUntil time.Time
	failures    int
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

	select {
	case r.work <- store.Ref(d):
	default:
		// The queue filled since the check: give the lease back so the
		// next poll, here or on another replica, takes it.
		r.release(d.ID, "relay queue full")
	}
	return false, nil
}

// canTakeLocally says whether a new delivery should be leased to this
// relay: it runs, is not paused for an unreachable Temporal, and has room.
func (r *Relay) canTakeLocally() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running && time.Now().After(r.pausedUntil) && len(r.work) < cap(r.work)
}

// Run dispatches until ctx ends, then finishes the dispatches in flight
// and gives back the leases of what it had not started.
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
	wg.Wait()
	for {
		select {
		case ref := <-r.work:
			r.release(ref.ID, "relay stopped")
		default:
			return nil
		}
	}
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
	r.mu.Lock()
	paused := time.Now().Before(r.pausedUntil)
	r.mu.Unlock()
	room := min(cap(r.work)-len(r.work), r.opts.Batch)
	if paused || room <= 0 || ctx.Err() != nil {
		return
	}

	refs, err := r.store.ClaimDue(ctx, r.opts.Owner, r.opts.Lease, room)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("claiming due deliveries", "error", err)
		}
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
			r.dispatch(ref)
		}
	}
}

// dispatch hands one delivery over. It deliberately does not use the
// relay's context: a dispatch begun before shutdown should finish, or its
// lease would keep the delivery waiting for another relay.
func (r *Relay) dispatch(ref store.DeliveryRef) {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.DispatchTimeout)
	defer cancel()

	err := r.dispatcher.Dispatch(ctx, ref)
	if err == nil {
		r.succeeded()
		if err := r.store.MarkDispatched(ctx, ref.ID, r.opts.Owner); err != nil {
			// The workflow has it; a second dispatch after the lease
			// expires is harmless, since workflows apply idempotently.
			r.log.Warn("marking delivery dispatched", "delivery_id", ref.ID, "error", err)
		}
		return
	}

	pause := r.failed()
	next := time.Now().Add(backoff(ref.Attempts, r.opts.MaxBackoff))
	r.log.Warn("dispatching delivery failed, will retry",
		"delivery_id", ref.ID, "kind", ref.Kind, "attempt", ref.Attempts,
		"retry_at", next.UTC().Format(time.RFC3339Nano), "relay_paused_for", pause.String(),
		"error", err)
	if err := r.store.RetryLater(ctx, ref.ID, r.opts.Owner, errorReason(err), next); err != nil {
		r.log.Warn("rescheduling delivery", "delivery_id", ref.ID, "error", err)
	}
}

// succeeded and failed keep the relay-wide pause: when Temporal is down
// every dispatch fails, and hammering it helps no one. The pause doubles
// with each consecutive failure up to MaxBackoff; one success lifts it.
func (r *Relay) succeeded() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = 0
	r.pausedUntil = time.Time{}
}

func (r *Relay) failed() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures++
	pause := backoff(r.failures, r.opts.MaxBackoff)
	r.pausedUntil = time.Now().Add(pause)
	return pause
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

func (r *Relay) release(id int64, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.store.RetryLater(ctx, id, r.opts.Owner, reason, time.Now()); err != nil {
		r.log.Warn("releasing delivery", "delivery_id", id, "error", err)
	}
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
			r.log.Warn("purging delivery bodies", "error", err)
		case n > 0:
			r.log.Info("purged delivery bodies past retention", "count", n)
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

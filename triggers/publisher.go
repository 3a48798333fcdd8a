package triggers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ctmflow/ctmflow/logging"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
)

// Starter starts the workflow of a delivery's current run. Starting one
// that exists already must succeed without a second run.
type Starter interface {
	StartDelivery(ctx context.Context, d models.TriggerDelivery) error
}

// Publisher turns committed lead events into deliveries and starts them.
// It is the activities' EventPublisher; every step is idempotent, so the
// fast path and the sweeper may publish the same event side by side.
type Publisher struct {
	Store   *store.Store
	Starter Starter
	// Logger receives failures, with ids only. Default discards.
	Logger *slog.Logger
}

// Publish fans the events out to the rules that match them and starts
// the deliveries. Events already published are skipped. On error, what
// was not done is left for the sweeper.
func (p *Publisher) Publish(ctx context.Context, eventIDs []int64) error {
	rules, err := p.Store.ListRules(ctx, store.RuleFilter{EnabledOnly: true})
	if err != nil {
		return err
	}
	types := map[string]bool{}
	for _, r := range rules {
		types[r.Event] = true
	}
	facts, unpublished, err := p.Store.UnpublishedEventFacts(ctx, eventIDs, types)
	if err != nil || len(unpublished) == 0 {
		return err
	}
	planned, err := matchAll(ctx, p.Store, rules, facts)
	if err != nil {
		return fmt.Errorf("matching rules: %w", err)
	}
	start, err := p.Store.FanOut(ctx, unpublished, planned)
	if err != nil {
		return err
	}
	return p.dispatch(ctx, start)
}

// Resend makes a finished delivery pending again and starts its new run.
// If the start fails, the sweeper starts it later; the resend stands.
func (p *Publisher) Resend(ctx context.Context, id int64) (*models.TriggerDelivery, error) {
	d, err := p.Store.ResendTriggerDelivery(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := p.dispatch(ctx, []models.TriggerDelivery{*d}); err != nil {
		p.log().Warn("resent delivery not started yet; the sweeper will",
			logging.KeyTriggerDeliveryID, id, logging.KeyError, err)
	}
	return d, nil
}

// dispatch starts each delivery's workflow and notes it started.
func (p *Publisher) dispatch(ctx context.Context, ds []models.TriggerDelivery) error {
	var errs []error
	for _, d := range ds {
		if err := p.Starter.StartDelivery(ctx, d); err != nil {
			errs = append(errs, fmt.Errorf("starting delivery %d: %w", d.ID, err))
			continue
		}
		if err := p.Store.MarkTriggerDispatched(ctx, d.ID, d.Resends); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p *Publisher) log() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

// Sweeper publishes what the fast path left behind: events committed but
// not published, deliveries recorded but not started. It is what makes
// "no trigger is lost" true when a publish fails or a process dies right
// after a commit.
type Sweeper struct {
	Publisher *Publisher
	// Interval is how often it sweeps, and how old an event must be
	// before it takes over from the fast path. Default 5s.
	Interval time.Duration
	// Batch caps one query. Default 200.
	Batch int
	// Logger receives failures. Default discards.
	Logger *slog.Logger
}

// Run sweeps until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	interval := s.Interval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log().Warn("trigger sweep failed; retrying next round", logging.KeyError, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// Sweep runs one round.
func (s *Sweeper) Sweep(ctx context.Context) error {
	interval, batch := s.Interval, s.Batch
	if interval <= 0 {
		interval = 5 * time.Second
	}
	if batch <= 0 {
		batch = 200
	}
	// Leave fresh events to the fast path: the activity that committed
	// them is publishing them now.
	before := time.Now().Add(-interval)
	st := s.Publisher.Store

	for {
		ids, err := st.UnpublishedEvents(ctx, before, batch)
		if err != nil {
			return err
		}
		if len(ids) > 0 {
			if err := s.Publisher.Publish(ctx, ids); err != nil {
				return err
			}
			s.log().Info("swept unpublished lead events", logging.KeyCount, len(ids))
		}
		if len(ids) < batch {
			break
		}
	}

	ds, err := st.UndispatchedDeliveries(ctx, before, batch)
	if err != nil || len(ds) == 0 {
		return err
	}
	s.log().Info("starting undispatched trigger deliveries", logging.KeyCount, len(ds))
	return s.Publisher.dispatch(ctx, ds)
}

func (s *Sweeper) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Background publishes without holding up the step that recorded the
// events: a call's workflow moves on at once, and the publish runs beside
// it. At most limit publishes run at a time; past that, and for anything
// cut short by a shutdown, the sweeper publishes.
type Background struct {
	publisher *Publisher
	timeout   time.Duration
	slots     chan struct{}
	wg        sync.WaitGroup
}

// NewBackground returns a background publisher running at most limit
// publishes, each for at most timeout.
func NewBackground(p *Publisher, limit int, timeout time.Duration) *Background {
	return &Background{publisher: p, timeout: timeout, slots: make(chan struct{}, limit)}
}

// ErrPublisherBusy means a publish was left to the sweeper.
var ErrPublisherBusy = errors.New("trigger publisher busy; the sweeper will publish")

// Publish starts publishing the events and returns.
func (b *Background) Publish(ctx context.Context, eventIDs []int64) error {
	select {
	case b.slots <- struct{}{}:
	default:
		return ErrPublisherBusy
	}
	b.wg.Add(1)
	go func() {
		defer func() {
			<-b.slots
			b.wg.Done()
		}()
		// The step that called may have returned already; its
		// cancellation is not the publish's.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.timeout)
		defer cancel()
		if err := b.publisher.Publish(ctx, eventIDs); err != nil {
			b.publisher.log().Warn("publishing lead events failed; the sweeper will retry",
				logging.KeyCount, len(eventIDs), logging.KeyError, err)
		}
	}()
	return nil
}

// Wait waits for the publishes in flight.
func (b *Background) Wait() { b.wg.Wait() }

// Package app assembles a ctmflow process from its parts: the inbox relay,
// the HTTP surface (webhooks, /api, health) and the Temporal worker. The
// commands and the integration tests build processes the same way, here.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/ctmflow/ctmflow/activities"
	"github.com/ctmflow/ctmflow/api"
	"github.com/ctmflow/ctmflow/config"
	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/egress"
	"github.com/ctmflow/ctmflow/engine"
	"github.com/ctmflow/ctmflow/inbox"
	"github.com/ctmflow/ctmflow/logging"
	"github.com/ctmflow/ctmflow/metrics"
	"github.com/ctmflow/ctmflow/server"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/triggers"
	"github.com/ctmflow/ctmflow/webhook"
	"github.com/ctmflow/ctmflow/worker"
)

// Deps are the long-lived clients a process shares between its parts.
type Deps struct {
	Config   *config.Config
	Log      *slog.Logger
	Store    *store.Store
	Temporal client.Client
	// Metrics, when set, receives what the parts measure and is served
	// at /metrics.
	Metrics *metrics.Metrics
	// CTM is the client of CTM's REST API; nil builds it from Config.
	CTM *ctm.Client
}

// ctmAPI returns d.CTM, or builds the client from the configuration.
func ctmAPI(d Deps) *ctm.Client {
	if d.CTM != nil {
		return d.CTM
	}
	c, err := NewCTMClient(d.Config, d.Log)
	if err != nil {
		// Config.Validate checked the URL: this is a bug, and without
		// the client calls fall back to end_missing.
		d.Log.Error("building ctm api client", logging.KeyError, err)
		return nil
	}
	return c
}

// OpenStore opens the configured database.
func OpenStore(ctx context.Context, cfg *config.Config) (*store.Store, error) {
	return store.Open(ctx, cfg.DatabaseURL, store.Options{
		MaxOpenConns:     cfg.DatabaseMaxConns,
		CreateOnlyFields: cfg.CreateOnlyFields,
	})
}

// NewCTMClient builds the client of CTM's REST API for the worker and
// the API. It does not retry by itself: Temporal retries the activities,
// and a player retries a recording.
func NewCTMClient(cfg *config.Config, log *slog.Logger) (*ctm.Client, error) {
	return ctm.NewClient(ctm.ClientOptions{
		BaseURL: cfg.CTMAPIURL,
		Keys:    cfg.CTMAPIKeys,
		Logger:  log.With(logging.KeyComponent, "ctm-api"),
	})
}

// DialTemporal connects to the configured Temporal, reporting the SDK's
// metrics to m when it is not nil. lazy lets a process start while
// Temporal is down.
func DialTemporal(
	ctx context.Context, cfg *config.Config, log *slog.Logger, m *metrics.Metrics, lazy bool,
) (client.Client, error) {
	return engine.Dial(ctx, engine.Options{
		HostPort:       cfg.TemporalAddress,
		Namespace:      cfg.TemporalNamespace,
		Logger:         log.With(logging.KeyComponent, "temporal-sdk"),
		MetricsHandler: m.TemporalHandler(),
		Lazy:           lazy,
	})
}

// NewRelay builds the inbox relay that hands deliveries to Temporal.
func NewRelay(d Deps) *inbox.Relay {
	return inbox.New(d.Store, &engine.Dispatcher{
		Client:           d.Temporal,
		TaskQueue:        d.Config.TaskQueue,
		EndTimeout:       d.Config.CallEndTimeout,
		EndChecks:        d.Config.CallEndMaxChecks,
		EndRecheck:       d.Config.CallEndRecheck,
		StepRetryTimeout: d.Config.StepRetryTimeout,
	}, inbox.Options{
		Retention: d.Config.InboxRetention,
		Lease:     d.Config.InboxLease,
		Logger:    d.Log.With(logging.KeyComponent, "relay"),
	})
}

// ServeWebhook runs the HTTP server and the relay until ctx ends. The
// server stops first, finishing requests in flight (each of which may
// store a delivery); then the relay finishes its dispatches in flight and
// gives back the leases of the rest. ready, when set, receives the bound
// address.
func ServeWebhook(ctx context.Context, d Deps, addr string, ready chan<- string) error {
	d.Metrics.WatchInbox(inboxStats(d.Store), inboxStatsTimeout)
	relay := NewRelay(d)
	relayCtx, stopRelay := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(relayCtx) }()

	err := server.Serve(ctx, addr, NewHandler(d, relay), d.Config.ShutdownTimeout, ready)
	stopRelay()
	if rerr := <-relayDone; err == nil {
		err = rerr
	}
	return err
}

// NewHandler builds the HTTP surface: webhooks, /api, health and, when
// d.Metrics is set, /metrics.
func NewHandler(d Deps, relay *inbox.Relay) http.Handler {
	wh := webhook.New(webhook.Options{
		Verifier: ctm.NewVerifier(d.Config.WebhookSecrets, 0),
		Inbox:    relay,
		MaxBody:  d.Config.MaxBodyBytes,
		Logger:   d.Log,
		Observe:  d.Metrics.ObserveDelivery,
	})
	a := api.New(api.Options{
		Store:       d.Store,
		Token:       d.Config.APIToken,
		PhoneRegion: d.Config.PhoneRegion,
		Logger:      d.Log,
		CTM:         ctmAPI(d),
	})
	return server.NewRouter(server.Options{
		Logger: d.Log,
		Mount: func(r *gin.Engine) {
			wh.Register(r)
			g := a.Group(r)
			a.Register(g)
			a.RegisterInbox(g, relay)
			a.RegisterTriggers(g, api.TriggerOptions{
				Resender:        NewPublisher(d),
				Guard:           egress.NewGuard(d.Config.OutboundAllowlist),
				RotationOverlap: d.Config.TriggerRotationOverlap,
			})
			mountMetrics(r, d.Metrics)
		},
		Ready:      ready(d),
		CountError: d.Metrics.CountError,
	})
}

// NewOpsHandler serves /healthz, /readyz and /metrics, for a process that
// serves nothing else over HTTP: the worker.
func NewOpsHandler(d Deps) http.Handler {
	return server.NewRouter(server.Options{
		Logger:     d.Log,
		Mount:      func(r *gin.Engine) { mountMetrics(r, d.Metrics) },
		Ready:      ready(d),
		CountError: d.Metrics.CountError,
	})
}

// MetricsPath is where a process serves its Prometheus metrics.
const MetricsPath = "/metrics"

func mountMetrics(r *gin.Engine, m *metrics.Metrics) {
	if m != nil {
		r.GET(MetricsPath, gin.WrapH(m.Handler()))
	}
}

// ready reports whether the process can do its work: its database and
// Temporal answer.
func ready(d Deps) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if err := d.Store.Ping(ctx); err != nil {
			return fmt.Errorf("database unreachable: %w", err)
		}
		if _, err := d.Temporal.CheckHealth(ctx, nil); err != nil {
			return fmt.Errorf("temporal unreachable: %w", err)
		}
		return nil
	}
}

// inboxStatsTimeout bounds the backlog query a scrape makes: a slow
// database must not hang Prometheus, and a missing series says as much.
const inboxStatsTimeout = 2 * time.Second

func inboxStats(st *store.Store) metrics.InboxStatsFunc {
	return func(ctx context.Context) (int64, time.Time, error) {
		s, err := st.InboxStats(ctx)
		return s.Pending, s.OldestPending, err
	}
}

// NewWorker builds the Temporal worker with its activities, and the
// trigger sweeper that runs beside it: starting the worker starts the
// sweeper, stopping it stops the sweeper first. The activities publish
// their lead events in the background, so a call's steps never wait on
// the triggers.
func NewWorker(d Deps) sdkworker.Worker {
	worker.SetCacheSize(d.Config.WorkerCacheSize)
	pub := NewPublisher(d)
	background := triggers.NewBackground(pub, 64, 10*time.Second)
	guard := egress.NewGuard(d.Config.OutboundAllowlist)
	w := worker.New(worker.Options{
		Client:      d.Temporal,
		TaskQueue:   d.Config.TaskQueue,
		StopTimeout: d.Config.ShutdownTimeout,
		Activities: &activities.Activities{
			Store:       d.Store,
			PhoneRegion: d.Config.PhoneRegion,
			Metrics:     d.Metrics,
			CTM:         ctmAPI(d),
			Events:      background,
		},
		Sender: &triggers.Sender{
			Store:   d.Store,
			Client:  egress.NewClient(guard, egress.Options{Timeout: d.Config.TriggerHTTPTimeout}),
			Metrics: d.Metrics,
		},
	})
	return &sweepingWorker{Worker: w, background: background, sweeper: &triggers.Sweeper{
		Publisher: pub,
		Interval:  d.Config.TriggerSweepInterval,
		Logger:    d.Log.With(logging.KeyComponent, "trigger-sweeper"),
	}}
}

// NewPublisher builds the triggers' publisher, which starts delivery
// workflows with the process's Temporal client.
func NewPublisher(d Deps) *triggers.Publisher {
	return &triggers.Publisher{
		Store: d.Store,
		Starter: &engine.TriggerStarter{
			Client:    d.Temporal,
			TaskQueue: d.Config.TaskQueue,
			Retry: triggers.Schedule{
				Initial: d.Config.TriggerRetryInitial,
				Max:     d.Config.TriggerRetryMax,
				For:     d.Config.TriggerRetryFor,
			},
		},
		Logger: d.Log.With(logging.KeyComponent, "triggers"),
	}
}

// sweepingWorker is a Temporal worker with the trigger sweeper beside it.
type sweepingWorker struct {
	sdkworker.Worker
	sweeper    *triggers.Sweeper
	background *triggers.Background

	mu   sync.Mutex
	stop context.CancelFunc
	done chan struct{}
}

func (w *sweepingWorker) Start() error {
	if err := w.Worker.Start(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	w.stop, w.done = cancel, make(chan struct{})
	go func() {
		defer close(w.done)
		w.sweeper.Run(ctx)
	}()
	return nil
}

func (w *sweepingWorker) Run(interruptCh <-chan any) error {
	if err := w.Start(); err != nil {
		return err
	}
	<-interruptCh
	w.Stop()
	return nil
}

func (w *sweepingWorker) Stop() {
	w.mu.Lock()
	stop, done := w.stop, w.done
	w.stop = nil
	w.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	w.Worker.Stop()
	// The activities have finished; let the publishes they started
	// finish too, rather than leave them to the next sweep.
	w.background.Wait()
}

// ErrStartingWorker wraps why ServeWorker could not start polling.
var ErrStartingWorker = errors.New("starting worker")

// ServeWorker runs the Temporal worker until ctx ends, with /healthz,
// /readyz and /metrics on the configured metrics address. On the way out
// the worker stops first, finishing the activities in flight within the
// shutdown timeout, while the metrics stay up to report it; then the
// listener closes. ready, when set, receives the listener's address.
func ServeWorker(ctx context.Context, d Deps, ready chan<- string) error {
	w := NewWorker(d)
	if err := w.Start(); err != nil {
		return fmt.Errorf("%w: %w", ErrStartingWorker, err)
	}

	opsCtx, stopOps := context.WithCancel(context.Background())
	defer stopOps()
	served := make(chan error, 1)
	go func() {
		served <- server.Serve(opsCtx, d.Config.MetricsAddr, NewOpsHandler(d), 5*time.Second, ready)
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
		// The listener failed (its port taken): a worker nobody can
		// probe or scrape is not one to keep running.
	}
	d.Log.Info("worker stopping")
	w.Stop()
	if err != nil {
		return err
	}
	stopOps()
	return <-served
}

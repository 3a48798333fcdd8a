package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/ctmflow/ctmflow/activities"
	"github.com/ctmflow/ctmflow/api"
	"github.com/ctmflow/ctmflow/config"
	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/engine"
	"github.com/ctmflow/ctmflow/inbox"
	"github.com/ctmflow/ctmflow/logging"
	"github.com/ctmflow/ctmflow/server"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/webhook"
	"github.com/ctmflow/ctmflow/worker"
)

// deps are the long-lived clients a process shares between its parts.
type deps struct {
	cfg      *config.Config
	log      *slog.Logger
	store    *store.Store
	temporal client.Client
}

func openStore(ctx context.Context, cfg *config.Config) (*store.Store, error) {
	return store.Open(ctx, cfg.DatabaseURL, store.Options{MaxOpenConns: cfg.DatabaseMaxConns})
}

func dialTemporal(ctx context.Context, cfg *config.Config, log *slog.Logger, lazy bool) (client.Client, error) {
	return engine.Dial(ctx, engine.Options{
		HostPort:  cfg.TemporalAddress,
		Namespace: cfg.TemporalNamespace,
		Logger:    log.With(logging.KeyComponent, "temporal-sdk"),
		Lazy:      lazy,
	})
}

// newRelay builds the inbox relay that hands deliveries to Temporal.
func newRelay(d deps) *inbox.Relay {
	return inbox.New(d.store, &engine.Dispatcher{
		Client:     d.temporal,
		TaskQueue:  d.cfg.TaskQueue,
		EndTimeout: d.cfg.CallEndTimeout,
	}, inbox.Options{
		Retention: d.cfg.InboxRetention,
		Logger:    d.log.With(logging.KeyComponent, "relay"),
	})
}

// serveWebhook runs the HTTP server and the relay until ctx ends. The
// server stops first, finishing requests in flight (each of which may
// store a delivery); then the relay finishes its dispatches in flight and
// gives back the leases of the rest.
func serveWebhook(ctx context.Context, d deps, addr string, ready chan<- string) error {
	relay := newRelay(d)
	relayCtx, stopRelay := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(relayCtx) }()

	err := server.Serve(ctx, addr, newHandler(d, relay), d.cfg.ShutdownTimeout, ready)
	stopRelay()
	if rerr := <-relayDone; err == nil {
		err = rerr
	}
	return err
}

// newHandler builds the HTTP surface: webhooks, /api and health.
func newHandler(d deps, relay *inbox.Relay) http.Handler {
	wh := webhook.New(webhook.Options{
		Verifier: ctm.NewVerifier(d.cfg.WebhookSecrets, 0),
		Inbox:    relay,
		MaxBody:  d.cfg.MaxBodyBytes,
		Logger:   d.log,
	})
	a := api.New(api.Options{
		Store:       d.store,
		Token:       d.cfg.APIToken,
		PhoneRegion: d.cfg.PhoneRegion,
		Logger:      d.log,
	})
	return server.NewRouter(server.Options{
		Logger: d.log,
		Mount: func(r *gin.Engine) {
			wh.Register(r)
			g := a.Group(r)
			a.Register(g)
			a.RegisterInbox(g, relay)
		},
		Ready: func(ctx context.Context) error {
			if err := d.store.Ping(ctx); err != nil {
				return err
			}
			if _, err := d.temporal.CheckHealth(ctx, nil); err != nil {
				return fmt.Errorf("reaching temporal: %w", err)
			}
			return nil
		},
	})
}

// newWorker builds the Temporal worker with its activities.
func newWorker(d deps) sdkworker.Worker {
	worker.SetCacheSize(d.cfg.WorkerCacheSize)
	return worker.New(worker.Options{
		Client:      d.temporal,
		TaskQueue:   d.cfg.TaskQueue,
		StopTimeout: d.cfg.ShutdownTimeout,
		Activities: &activities.Activities{
			Store:       d.store,
			PhoneRegion: d.cfg.PhoneRegion,
		},
	})
}

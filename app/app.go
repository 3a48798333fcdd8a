// Package app assembles a ctmflow process from its parts: the inbox relay,
// the HTTP surface (webhooks, /api, health) and the Temporal worker. The
// commands and the integration tests build processes the same way, here.
package app

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

// Deps are the long-lived clients a process shares between its parts.
type Deps struct {
	Config   *config.Config
	Log      *slog.Logger
	Store    *store.Store
	Temporal client.Client
}

// OpenStore opens the configured database.
func OpenStore(ctx context.Context, cfg *config.Config) (*store.Store, error) {
	return store.Open(ctx, cfg.DatabaseURL, store.Options{MaxOpenConns: cfg.DatabaseMaxConns})
}

// DialTemporal connects to the configured Temporal. lazy lets a process
// start while Temporal is down.
func DialTemporal(ctx context.Context, cfg *config.Config, log *slog.Logger, lazy bool) (client.Client, error) {
	return engine.Dial(ctx, engine.Options{
		HostPort:  cfg.TemporalAddress,
		Namespace: cfg.TemporalNamespace,
		Logger:    log.With(logging.KeyComponent, "temporal-sdk"),
		Lazy:      lazy,
	})
}

// NewRelay builds the inbox relay that hands deliveries to Temporal.
func NewRelay(d Deps) *inbox.Relay {
	return inbox.New(d.Store, &engine.Dispatcher{
		Client:     d.Temporal,
		TaskQueue:  d.Config.TaskQueue,
		EndTimeout: d.Config.CallEndTimeout,
	}, inbox.Options{
		Retention: d.Config.InboxRetention,
		Logger:    d.Log.With(logging.KeyComponent, "relay"),
	})
}

// ServeWebhook runs the HTTP server and the relay until ctx ends. The
// server stops first, finishing requests in flight (each of which may
// store a delivery); then the relay finishes its dispatches in flight and
// gives back the leases of the rest. ready, when set, receives the bound
// address.
func ServeWebhook(ctx context.Context, d Deps, addr string, ready chan<- string) error {
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

// NewHandler builds the HTTP surface: webhooks, /api and health.
func NewHandler(d Deps, relay *inbox.Relay) http.Handler {
	wh := webhook.New(webhook.Options{
		Verifier: ctm.NewVerifier(d.Config.WebhookSecrets, 0),
		Inbox:    relay,
		MaxBody:  d.Config.MaxBodyBytes,
		Logger:   d.Log,
	})
	a := api.New(api.Options{
		Store:       d.Store,
		Token:       d.Config.APIToken,
		PhoneRegion: d.Config.PhoneRegion,
		Logger:      d.Log,
	})
	return server.NewRouter(server.Options{
		Logger: d.Log,
		Mount: func(r *gin.Engine) {
			wh.Register(r)
			g := a.Group(r)
			a.Register(g)
			a.RegisterInbox(g, relay)
		},
		Ready: func(ctx context.Context) error {
			if err := d.Store.Ping(ctx); err != nil {
				return err
			}
			if _, err := d.Temporal.CheckHealth(ctx, nil); err != nil {
				return fmt.Errorf("reaching temporal: %w", err)
			}
			return nil
		},
	})
}

// NewWorker builds the Temporal worker with its activities.
func NewWorker(d Deps) sdkworker.Worker {
	worker.SetCacheSize(d.Config.WorkerCacheSize)
	return worker.New(worker.Options{
		Client:      d.Temporal,
		TaskQueue:   d.Config.TaskQueue,
		StopTimeout: d.Config.ShutdownTimeout,
		Activities: &activities.Activities{
			Store:       d.Store,
			PhoneRegion: d.Config.PhoneRegion,
		},
	})
}

package cli

import (
	"context"
	"errors"

	"github.com/spf13/cobra"

	"github.com/ctmflow/ctmflow/app"
	"github.com/ctmflow/ctmflow/config"
	"github.com/ctmflow/ctmflow/engine"
	"github.com/ctmflow/ctmflow/logging"
	"github.com/ctmflow/ctmflow/metrics"
)

func newWebhookCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "webhook",
		Short: "Receive CTM webhooks, serve /api, relay deliveries to Temporal",
		Long: `Receive CTM webhooks, serve /api, relay deliveries to Temporal.

A delivery is stored before it is answered; the relay hands it to its
workflow, retrying while Temporal is unreachable. The process starts
and keeps accepting webhooks with Temporal down. /healthz, /readyz and
/metrics are served on HTTP_ADDR too. On SIGTERM it stops accepting,
answers the requests in flight, then finishes its dispatches in flight.
Configured from the environment; see README.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(config.RoleWebhook)
			if err != nil {
				return err
			}
			d, closeDeps, err := connect(cmd.Context(), cfg, cmd, true)
			if err != nil {
				return err
			}
			defer closeDeps()
			err = app.ServeWebhook(cmd.Context(), d, cfg.HTTPAddr, logListening(d, "webhook receiver listening"))
			d.Log.Info("webhook receiver stopped")
			return err
		},
	}
}

func newWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "worker",
		Short: "Run the Temporal worker that executes call workflows",
		Long: `Run the Temporal worker that executes call workflows.

/healthz, /readyz and /metrics are served on METRICS_ADDR. On SIGTERM
the worker stops polling and finishes the activities in flight within
SHUTDOWN_TIMEOUT; workflows resume on any other worker.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(config.RoleWorker)
			if err != nil {
				return err
			}
			d, closeDeps, err := connect(cmd.Context(), cfg, cmd, false)
			if err != nil {
				return err
			}
			defer closeDeps()

			d.Log.Info("worker polling", "task_queue", cfg.TaskQueue)
			err = app.ServeWorker(cmd.Context(), d, logListening(d, "worker metrics listening"))
			if errors.Is(err, app.ErrStartingWorker) {
				return withCode(ExitUnavailable, err)
			}
			d.Log.Info("worker stopped")
			return err
		},
	}
}

// logListening returns a channel that logs the address a listener bound,
// which differs from the configured one when that says port 0.
func logListening(d app.Deps, msg string) chan<- string {
	ready := make(chan string, 1)
	go func() {
		if addr, ok := <-ready; ok {
			d.Log.Info(msg, logging.KeyAddr, addr)
		}
	}()
	return ready
}

func newMigrateCmd() *cobra.Command {
	var skipTemporal bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or update the database schema and Temporal search attributes",
		Long: `Create or update the database schema and register the workflows'
search attributes in the Temporal namespace. Safe to run repeatedly and
from several replicas at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(config.RoleMigrate)
			if err != nil {
				return err
			}
			log, err := newLogger(cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			st, err := app.OpenStore(ctx, cfg)
			if err != nil {
				return withCode(ExitUnavailable, err)
			}
			defer st.Close()
			if err := st.Migrate(ctx); err != nil {
				return err
			}
			log.Info("database schema up to date", "dialect", st.Dialect())
			if skipTemporal {
				return nil
			}

			tc, err := app.DialTemporal(ctx, cfg, log, nil, false)
			if err != nil {
				return withCode(ExitUnavailable, err)
			}
			defer tc.Close()
			if err := engine.EnsureSearchAttributes(ctx, tc, cfg.TemporalNamespace); err != nil {
				return withCode(ExitUnavailable, err)
			}
			log.Info("search attributes registered", "namespace", cfg.TemporalNamespace)
			return nil
		},
	}
	cmd.Flags().BoolVar(&skipTemporal, "skip-temporal", false,
		"only migrate the database; leave Temporal's search attributes alone")
	return cmd
}

// connect opens the database and the Temporal client a production process
// needs. lazy lets the process start while Temporal is down.
func connect(ctx context.Context, cfg *config.Config, cmd *cobra.Command, lazy bool) (app.Deps, func(), error) {
	log, err := newLogger(cfg, cmd.ErrOrStderr())
	if err != nil {
		return app.Deps{}, nil, err
	}
	st, err := app.OpenStore(ctx, cfg)
	if err != nil {
		return app.Deps{}, nil, withCode(ExitUnavailable, err)
	}
	m := metrics.New()
	tc, err := app.DialTemporal(ctx, cfg, log, m, lazy)
	if err != nil {
		_ = st.Close()
		return app.Deps{}, nil, withCode(ExitUnavailable, err)
	}
	closeAll := func() {
		tc.Close()
		_ = st.Close()
	}
	return app.Deps{Config: cfg, Log: log, Store: st, Temporal: tc, Metrics: m}, closeAll, nil
}

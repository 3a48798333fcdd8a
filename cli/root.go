// Package cli is the ctmflow command: `dev` runs everything in one
// process; `webhook`, `worker` and `migrate` are the production
// processes; `send`, `inbox` and friends are tools for people.
//
// Exit codes are part of the interface, so scripts can act on them:
// 0 success, 1 failure, 2 usage error, 3 bad configuration, 4 a dependency
// (database, Temporal, the server) unreachable, 5 the server refused.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ctmflow/ctmflow/config"
	"github.com/ctmflow/ctmflow/logging"
)

// Exit codes.
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2
	ExitConfig      = 3
	ExitUnavailable = 4
	ExitRejected    = 5
)

// exitError carries an exit code up to Execute.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

func usage(format string, args ...any) error {
	return withCode(ExitUsage, fmt.Errorf(format, args...))
}

// Execute runs the command line and returns the process exit code.
func Execute(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "ctmflow:", err)
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case strings.HasPrefix(err.Error(), "unknown command"),
		strings.HasPrefix(err.Error(), "accepts "),
		strings.HasPrefix(err.Error(), "requires "):
		return ExitUsage
	}
	return ExitFailure
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "ctmflow",
		Short: "CallTrackingMetrics webhooks to CRM leads, one durable workflow per call",
		Long: `ctmflow turns CallTrackingMetrics call webhooks into CRM leads.

  ctmflow dev       everything in one process, for a laptop
  ctmflow webhook   production: webhook receiver, API and inbox relay
  ctmflow worker    production: the Temporal worker
  ctmflow migrate   production: database schema and search attributes
  ctmflow reconcile fill the gaps CTM's webhooks left, from CTM's API
  ctmflow ops       find calls that need attention; retry or skip steps`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return withCode(ExitUsage, err)
	})
	root.AddCommand(
		newWebhookCmd(),
		newWorkerCmd(),
		newMigrateCmd(),
		newSendCmd(),
		newInboxCmd(),
		newConfigCmd(),
		newProbeCmd(),
		newReconcileCmd(),
		newOpsCmd(),
		newDeliveriesCmd(),
	)
	root.AddCommand(devCommands()...)
	return root
}

// loadConfig reads the environment for role; a bad value is exit code 3.
func loadConfig(role config.Role) (*config.Config, error) {
	cfg, err := config.Load(role, nil)
	if err != nil {
		return nil, withCode(ExitConfig, fmt.Errorf("configuration:\n%w", err))
	}
	return cfg, nil
}

func newLogger(cfg *config.Config, w io.Writer) (*slog.Logger, error) {
	l, err := logging.New(w, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return nil, withCode(ExitConfig, err)
	}
	// Libraries that log through the log package or slog's default then
	// write through the same handler, redactor included.
	slog.SetDefault(l)
	return l, nil
}

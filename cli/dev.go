//go:build !nodev

package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/ctmflow/ctmflow/app"
	"github.com/ctmflow/ctmflow/config"
	"github.com/ctmflow/ctmflow/devserver"
	"github.com/ctmflow/ctmflow/engine"
	"github.com/ctmflow/ctmflow/metrics"
)

// devFlags are `ctmflow dev`'s flags.
type devFlags struct {
	dataDir      string
	httpAddr     string
	temporalPort int
	uiPort       int
}

// devCommands are the commands that embed the Temporal server.
func devCommands() []*cobra.Command {
	return []*cobra.Command{newDevCmd(), newBenchCmd()}
}

func newDevCmd() *cobra.Command {
	var f devFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything in one process: Temporal, its Web UI, webhooks, API and worker",
		Long: `Run everything in one process: an embedded Temporal server with its Web
UI, the webhook receiver and API, and the worker. State persists in the
data directory (Temporal's and the CRM's SQLite files), so stopping and
starting again loses nothing. Set DATABASE_URL to use Postgres instead.

On first start it generates an API token and a CTM webhook secret for
account 1, keeps them in the data directory and prints them; API_TOKEN
and CTM_WEBHOOK_SECRETS override them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", ".ctmflow", "directory for the Temporal and CRM databases and logs")
	fl.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:8080", "address of the webhook and API server")
	fl.IntVar(&f.temporalPort, "temporal-port", 7233, "port of the embedded Temporal frontend (gRPC)")
	fl.IntVar(&f.uiPort, "ui-port", 8233, "port of the Temporal Web UI; 0 turns it off")
	return cmd
}

// devCredentials are generated on the first dev start and kept in the data
// directory, so that `ctmflow send` and a restarted server agree.
type devCredentials struct {
	APIToken      string `json:"api_token"`
	AccountID     int64  `json:"account_id"`
	WebhookSecret string `json:"webhook_secret"`
}

func runDev(ctx context.Context, f devFlags, stdout, stderr io.Writer) error {
	if f.temporalPort < 1 || f.temporalPort > 65535 {
		return usage("--temporal-port must be between 1 and 65535, got %d", f.temporalPort)
	}
	if f.uiPort < 0 || f.uiPort > 65535 {
		return usage("--ui-port must be between 0 and 65535, got %d", f.uiPort)
	}
	if _, _, err := net.SplitHostPort(f.httpAddr); err != nil {
		return usage("--http-addr must be host:port, got %q", f.httpAddr)
	}

	cfg, err := loadConfig(config.RoleDev)
	if err != nil {
		return err
	}
	if os.Getenv("LOG_FORMAT") == "" {
		cfg.LogFormat = "text" // people read dev logs; machines read production's
	}
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	creds, err := loadOrCreateCredentials(f.dataDir)
	if err != nil {
		return err
	}
	if cfg.APIToken == "" {
		cfg.APIToken = creds.APIToken
	}
	if len(cfg.WebhookSecrets) == 0 {
		cfg.WebhookSecrets = config.Secrets{creds.AccountID: creds.WebhookSecret}
	}
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = "sqlite:" + filepath.Join(f.dataDir, "ctmflow.db")
	}
	cfg.HTTPAddr = f.httpAddr
	cfg.TemporalAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(f.temporalPort))

	log, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	log.Info("starting embedded temporal server", "data_dir", f.dataDir)
	srv, err := devserver.Start(ctx, devserver.Options{
		DBPath:    filepath.Join(f.dataDir, "temporal.db"),
		Namespace: cfg.TemporalNamespace,
		Port:      f.temporalPort,
		UIPort:    f.uiPort,
		LogPath:   filepath.Join(f.dataDir, "temporal.log"),
	})
	if err != nil {
		return withCode(ExitUnavailable, err)
	}
	defer func() {
		if err := srv.Stop(); err != nil {
			log.Warn("stopping temporal server", "error", err)
		}
	}()

	m := metrics.New()
	tc, err := app.DialTemporal(ctx, cfg, log, m, false)
	if err != nil {
		return withCode(ExitUnavailable, err)
	}
	defer tc.Close()
	if err := engine.EnsureSearchAttributes(ctx, tc, cfg.TemporalNamespace); err != nil {
		return err
	}

	st, err := app.OpenStore(ctx, cfg)
	if err != nil {
		return withCode(ExitUnavailable, err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}

	d := app.Deps{Config: cfg, Log: log, Store: st, Temporal: tc, Metrics: m}
	w := app.NewWorker(d)
	if err := w.Start(); err != nil {
		return fmt.Errorf("starting worker: %w", err)
	}
	defer w.Stop()

	ready := make(chan string, 1)
	go func() {
		addr, ok := <-ready
		if !ok {
			return
		}
		waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := srv.WaitUI(waitCtx); err != nil {
			log.Warn("web ui not answering yet", "error", err)
		}
		printBanner(stdout, f, cfg, creds, addr, srv.UIURL(), st.Dialect())
	}()
	err = app.ServeWebhook(ctx, d, cfg.HTTPAddr, ready)
	log.Info("stopping")
	return err
}

func loadOrCreateCredentials(dataDir string) (devCredentials, error) {
	path := filepath.Join(dataDir, credentialsFile)
	var c devCredentials
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &c); err != nil || c.APIToken == "" || c.WebhookSecret == "" || c.AccountID <= 0 {
			return c, withCode(ExitConfig, fmt.Errorf("%s is damaged; delete it to generate new credentials", path))
		}
		return c, nil
	case !errors.Is(err, os.ErrNotExist):
		return c, fmt.Errorf("reading %s: %w", path, err)
	}

	c = devCredentials{
		APIToken:      "dev_" + randomHex(16),
		AccountID:     1,
		WebhookSecret: "devsecret_" + randomHex(16),
	}
	b, err = json.MarshalIndent(c, "", "  ")
	if err != nil {
		return c, err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return c, fmt.Errorf("writing %s: %w", path, err)
	}
	return c, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func printBanner(w io.Writer, f devFlags, cfg *config.Config, creds devCredentials, addr, uiURL, dialect string) {
	base := "http://" + addr
	ui := uiURL
	if ui == "" {
		ui = "off (--ui-port 0)"
	}
	fmt.Fprintf(w, `
ctmflow dev is running. Ctrl-C stops it; state stays in %s.

  webhooks     %s/webhooks/ctm/{call-start,call-end,call-update,text-message}
  api          %s/api/leads
  metrics      %s/metrics
  temporal     %s (namespace %s)
  web ui       %s
  database     %s (%s)

  api token    %s
  ctm secret   %s (account %d)

Send a signed test call:   go run ./cmd/ctmflow send
List leads:                curl -H "Authorization: Bearer %s" %s/api/leads

`, f.dataDir, base, base, base, cfg.TemporalAddress, cfg.TemporalNamespace, ui,
		dialect, config.RedactURL(cfg.DatabaseURL), cfg.APIToken, devSecretLine(cfg, creds),
		firstAccount(cfg, creds), cfg.APIToken, base)
}

func devSecretLine(cfg *config.Config, creds devCredentials) string {
	if s, ok := cfg.WebhookSecrets[creds.AccountID]; ok {
		return s
	}
	return "from CTM_WEBHOOK_SECRETS"
}

func firstAccount(cfg *config.Config, creds devCredentials) int64 {
	if _, ok := cfg.WebhookSecrets[creds.AccountID]; ok {
		return creds.AccountID
	}
	for id := range cfg.WebhookSecrets {
		return id
	}
	return 0
}

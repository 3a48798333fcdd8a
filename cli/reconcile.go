package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ctmflow/ctmflow/config"
	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/reconcile"
	"github.com/ctmflow/ctmflow/store"
)

// reconcileFlags are `ctmflow reconcile`'s flags.
type reconcileFlags struct {
	account      int64
	since, until string
	perPage      int
	scores       bool
	wait         time.Duration
	dataDir      string
}

func newReconcileCmd() *cobra.Command {
	var f reconcileFlags
	cmd := &cobra.Command{
		Use:   "reconcile --account ID --since TIME [--until TIME]",
		Short: "Fill the gaps CTM's webhooks left, from CTM's API",
		Long: `Walk CTM's call list for one account and period and fill every gap:
calls that never reached ctmflow, ends that never came, transcripts,
recordings and ratings that came after the last webhook. Gaps are
queued as inbox deliveries; the running relay (ctmflow webhook, or dev)
hands them to the call workflows. Running it again adds nothing.

TIME is RFC 3339 (2026-03-01T08:00:00-05:00), a UTC date (2026-03-01)
or a Go duration before now (48h). Needs CTM_API_KEYS for the account,
and DATABASE_URL or the dev database in --data-dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runReconcile(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.Int64Var(&f.account, "account", 0, "CTM account id (required)")
	fl.StringVar(&f.since, "since", "", "start of the period: calls that started at or after it (required)")
	fl.StringVar(&f.until, "until", "", "end of the period, exclusive (default now)")
	fl.IntVar(&f.perPage, "per-page", ctm.MaxPerPage, "calls per page asked of CTM, at most 150")
	fl.BoolVar(&f.scores, "scores", false, "also ask each unrated ended call's sale (one request per call)")
	fl.DurationVar(&f.wait, "wait", 0, "wait up to this long for the workflows to apply what was queued")
	fl.StringVar(&f.dataDir, "data-dir", ".ctmflow", "dev data directory, used when DATABASE_URL is unset")
	return cmd
}

func runReconcile(ctx context.Context, f reconcileFlags, stdout, stderr io.Writer) error {
	now := time.Now().UTC()
	if f.account <= 0 {
		return usage("--account must be a CTM account id")
	}
	if f.since == "" {
		return usage("--since is required")
	}
	since, err := parseWhen(f.since, now)
	if err != nil {
		return usage("--since: %v", err)
	}
	until := now
	if f.until != "" {
		if until, err = parseWhen(f.until, now); err != nil {
			return usage("--until: %v", err)
		}
	}
	if !until.After(since) {
		return usage("--until (%s) must be after --since (%s)", until.Format(time.RFC3339), since.Format(time.RFC3339))
	}
	if f.perPage < 1 || f.perPage > ctm.MaxPerPage {
		return usage("--per-page must be between 1 and %d, got %d", ctm.MaxPerPage, f.perPage)
	}
	if f.wait < 0 {
		return usage("--wait must not be negative")
	}

	cfg, err := loadConfig(config.RoleReconcile)
	if err != nil {
		return err
	}
	if _, ok := cfg.CTMAPIKeys[f.account]; !ok {
		return withCode(ExitConfig, fmt.Errorf("CTM_API_KEYS has no keys for account %d (it has: %s)",
			f.account, cfg.CTMAPIKeys))
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	// Unlike the workflows, which leave retrying to Temporal, the command
	// retries CTM itself, honouring Retry-After.
	client, err := ctm.NewClient(ctm.ClientOptions{
		BaseURL: cfg.CTMAPIURL,
		Keys:    cfg.CTMAPIKeys,
		Retries: 5,
		Logger:  log,
		OnRetry: func(err error, wait time.Duration) {
			fmt.Fprintf(stderr, "reconcile: %v; retrying in %s\n", err, wait.Round(time.Second))
		},
	})
	if err != nil {
		return withCode(ExitConfig, err)
	}
	st, err := toolStore(ctx, f.dataDir)
	if err != nil {
		return err
	}
	defer st.Close()

	sum, err := reconcile.Run(ctx, reconcile.Options{
		CTM: client, Store: st, AccountID: f.account,
		Since: since, Until: until, PerPage: f.perPage, Scores: f.scores,
		Progress: func(s reconcile.Summary) {
			fmt.Fprintf(stderr, "reconcile: page %d/%d · %d calls checked · %d gaps · %d queued\n",
				s.Page, s.Pages, s.Checked, s.Gaps(), s.Queued)
		},
	})
	writeSummary(stdout, f.account, since, until, sum)
	if err != nil {
		return reconcileError(err)
	}
	if f.wait > 0 && len(sum.DeliveryIDs) > 0 {
		return waitApplied(ctx, st, sum.DeliveryIDs, f.wait, stdout)
	}
	return nil
}

// parseWhen reads a time: RFC 3339, a UTC date, or a duration before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not RFC 3339, a date (2006-01-02) or a duration (48h)", s)
}

// reconcileError gives CTM's failures their exit codes: keys or request
// refused is 5, CTM unreachable or rate limiting past our patience is 4.
func reconcileError(err error) error {
	switch {
	case errors.Is(err, ctm.ErrUnauthorized), errors.Is(err, ctm.ErrRefused), errors.Is(err, ctm.ErrNotFound):
		return withCode(ExitRejected, err)
	case errors.Is(err, ctm.ErrUnavailable), errors.Is(err, ctm.ErrRateLimited):
		return withCode(ExitUnavailable, err)
	}
	return err
}

func writeSummary(w io.Writer, account int64, since, until time.Time, s reconcile.Summary) {
	fmt.Fprintf(w, "account %d, calls started %s to %s\n\n", account,
		since.Format(time.RFC3339), until.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	rows := []struct {
		label string
		n     int
	}{
		{"pages read", s.PagesRead},
		{"calls listed", s.Listed},
		{"calls in the period", s.Checked},
		{"unreadable objects", s.Unusable},
		{"missing calls", s.MissingCalls},
		{"missing texts", s.MissingTexts},
		{"missing ends", s.MissingEnds},
		{"missing transcripts", s.MissingTranscripts},
		{"missing recordings", s.MissingRecordings},
		{"missing ratings", s.MissingRatings},
		{"deliveries queued", s.Queued},
		{"already queued", s.AlreadyQueued},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "  %s\t%d\n", r.label, r.n)
	}
	_ = tw.Flush()
	if s.Queued+s.AlreadyQueued > 0 {
		fmt.Fprintln(w, "\nThe relay (ctmflow webhook, or dev) hands the queued deliveries to their workflows.")
	}
}

// waitApplied polls until every delivery is applied or wait passes.
func waitApplied(ctx context.Context, st *store.Store, ids []int64, wait time.Duration, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		left := 0
		for _, id := range ids {
			d, err := st.GetDelivery(ctx, id)
			if errors.Is(err, store.ErrPurged) {
				continue // applied, and past retention already
			}
			if err != nil || d.ProcessedAt == nil {
				left++
			}
		}
		if left == 0 {
			fmt.Fprintf(w, "all %d deliveries applied\n", len(ids))
			return nil
		}
		select {
		case <-ctx.Done():
			return withCode(ExitUnavailable, fmt.Errorf(
				"%d of %d deliveries not applied within %s: are the relay and a worker running?",
				left, len(ids), wait))
		case <-tick.C:
		}
	}
}

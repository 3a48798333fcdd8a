package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
)

func newInboxCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "inbox",
		Short: "Inspect and re-drive stored CTM deliveries",
		Long: `Inspect and re-drive stored CTM deliveries. Reads DATABASE_URL, or the
dev database in --data-dir when it is unset.`,
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", ".ctmflow",
		"dev data directory, used when DATABASE_URL is unset")

	var status string
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List deliveries, newest first, with the pending backlog",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if status != "" && status != models.DeliveryPending && status != models.DeliveryDispatched {
				return usage("--status must be pending or dispatched, got %q", status)
			}
			if limit < 1 || limit > 1000 {
				return usage("--limit must be between 1 and 1000, got %d", limit)
			}
			st, err := toolStore(cmd.Context(), dataDir)
			if err != nil {
				return err
			}
			defer st.Close()

			stats, err := st.InboxStats(cmd.Context())
			if err != nil {
				return err
			}
			ds, err := st.ListDeliveries(cmd.Context(), store.DeliveryFilter{Status: status, Limit: limit})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			oldest := "-"
			if !stats.OldestPending.IsZero() {
				oldest = time.Since(stats.OldestPending).Round(time.Second).String()
			}
			fmt.Fprintf(out, "pending: %d, oldest pending: %s\n\n", stats.Pending, oldest)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tACCOUNT\tCTM ID\tSTATUS\tATTEMPTS\tRECEIVED\tLAST ERROR")
			for _, d := range ds {
				fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\t%d\t%s\t%s\n", d.ID, d.Kind, d.AccountID, d.CTMID,
					d.Status, d.Attempts, d.ReceivedAt.UTC().Format(time.RFC3339), d.LastError)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&status, "status", "", "only pending or dispatched deliveries")
	list.Flags().IntVar(&limit, "limit", 50, "how many to list")

	replay := &cobra.Command{
		Use:   "replay ID",
		Short: "Hand a stored delivery to its workflow again",
		Long: `Hand a stored delivery to its workflow again. Workflows apply deliveries
idempotently: a replay repairs a call without duplicating anything. A
running relay picks it up within its poll interval.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := idArg(args[0])
			if err != nil {
				return err
			}
			st, err := toolStore(cmd.Context(), dataDir)
			if err != nil {
				return err
			}
			defer st.Close()
			err = st.ReplayDelivery(cmd.Context(), id)
			switch {
			case errors.Is(err, store.ErrNotFound):
				return fmt.Errorf("no delivery %d", id)
			case errors.Is(err, store.ErrPurged):
				return fmt.Errorf("delivery %d was purged after its retention; it cannot be replayed", id)
			case err != nil:
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "delivery %d is pending again\n", id)
			return nil
		},
	}
	cmd.AddCommand(list, replay)
	return cmd
}

// toolStore opens the database for an ops command: DATABASE_URL, else the
// dev database in dataDir.
func toolStore(ctx context.Context, dataDir string) (*store.Store, error) {
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		path := filepath.Join(dataDir, "ctmflow.db")
		if _, err := os.Stat(path); err != nil {
			return nil, withCode(ExitConfig, fmt.Errorf(
				"DATABASE_URL is unset and there is no dev database at %s", path))
		}
		dsn = "sqlite:" + path
	}
	st, err := store.Open(ctx, dsn, store.Options{MaxOpenConns: 2})
	if err != nil {
		return nil, withCode(ExitUnavailable, err)
	}
	return st, nil
}

// idArg reads a command's ID argument: a positive integer, or a usage
// error (exit 2).
func idArg(arg string) (int64, error) {
	id, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || id <= 0 {
		return 0, usage("ID must be a positive integer, got %q", arg)
	}
	return id, nil
}

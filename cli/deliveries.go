package cli

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
)

func newDeliveriesCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "deliveries",
		Short: "Inspect and resend trigger deliveries",
		Long: `Inspect and resend trigger deliveries: lead events sent to the
destinations of trigger rules. Reads DATABASE_URL, or the dev database
in --data-dir when it is unset.`,
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", ".ctmflow",
		"dev data directory, used when DATABASE_URL is unset")

	var f store.TriggerDeliveryFilter
	list := &cobra.Command{
		Use:   "list",
		Short: "List trigger deliveries, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.Status != "" && !slices.Contains(models.TriggerStatuses, f.Status) {
				return usage("--status must be one of %s, got %q", strings.Join(models.TriggerStatuses, ", "), f.Status)
			}
			if f.Limit < 1 || f.Limit > 1000 {
				return usage("--limit must be between 1 and 1000, got %d", f.Limit)
			}
			st, err := toolStore(cmd.Context(), dataDir)
			if err != nil {
				return err
			}
			defer st.Close()

			ds, err := st.ListTriggerDeliveries(cmd.Context(), f)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tRULE\tEVENT\tLEAD\tSTATUS\tATTEMPTS\tLAST CODE\tCREATED\tLAST ERROR")
			for _, d := range ds {
				fmt.Fprintf(tw, "%d\t%d\t%s %d\t%d\t%s\t%d\t%d\t%s\t%s\n",
					d.ID, d.RuleID, d.EventType, d.EventID, d.LeadID, d.Status, d.Attempts,
					d.LastStatusCode, d.CreatedAt.UTC().Format(time.RFC3339), d.LastError)
			}
			return tw.Flush()
		},
	}
	list.Flags().Int64Var(&f.RuleID, "rule", 0, "only this rule's deliveries")
	list.Flags().Int64Var(&f.LeadID, "lead", 0, "only this lead's deliveries")
	list.Flags().StringVar(&f.Status, "status", "", "only deliveries in this state")
	list.Flags().IntVar(&f.Limit, "limit", 50, "how many to list")

	resend := &cobra.Command{
		Use:   "resend ID",
		Short: "Send a delivered or failed trigger delivery again",
		Long: `Send a delivered or failed trigger delivery again, with the same
webhook-id, so a receiver that saw it already can tell. A running worker
starts it within TRIGGER_SWEEP_INTERVAL. A rule disabled since (by staff,
or by a 410 answer) must be enabled first, or the resend is skipped.`,
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

			d, err := st.ResendTriggerDelivery(cmd.Context(), id)
			switch {
			case errors.Is(err, store.ErrNotFound):
				return fmt.Errorf("no trigger delivery %d", id)
			case errors.Is(err, store.ErrBusy):
				return fmt.Errorf("trigger delivery %d is still being attempted; "+
					"resend it once it has delivered or failed", id)
			case err != nil:
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(),
				"trigger delivery %d is pending again (resend %d); a running worker sends it\n", d.ID, d.Resends)
			return nil
		},
	}
	cmd.AddCommand(list, resend)
	return cmd
}

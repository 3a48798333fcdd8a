package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/ctmflow/ctmflow/config"
	"github.com/ctmflow/ctmflow/engine"
	"github.com/ctmflow/ctmflow/workflows"
)

func newOpsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ops",
		Short: "Find calls whose steps are parked and tell them to retry or skip",
		Long: `Find calls whose steps are parked and tell them to retry or skip.

A step whose retries run out parks: its workflow sets CtmNeedsAttention
and waits for an ops decision. Fix the cause (the database, a bad
delivery), then retry; skip a step only when it can never succeed.

CALL is a workflow id (ctm-call-1-42, ctm-message-1-7) or ACCOUNT/CALLID.
Reads TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE.`,
	}

	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List open calls that need attention, with their parked steps",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > 1000 {
				return usage("--limit must be between 1 and 1000, got %d", limit)
			}
			return withOpsClient(cmd.Context(), func(ctx context.Context, c client.Client) error {
				calls, err := engine.ListParked(ctx, c, limit)
				if err != nil {
					return err
				}
				return writeParked(cmd.OutOrStdout(), calls, time.Now())
			})
		},
	}
	list.Flags().IntVar(&limit, "limit", 100, "how many calls to list")

	cmd.AddCommand(list,
		newDecisionCmd(workflows.OpsRetry, "Retry a call's parked steps, once their cause is fixed"),
		newDecisionCmd(workflows.OpsSkip, "Give up on a call's parked steps and let the call go on"))
	return cmd
}

func newDecisionCmd(action, short string) *cobra.Command {
	var step string
	cmd := &cobra.Command{
		Use:   action + " CALL",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := workflowIDOf(args[0])
			if err != nil {
				return err
			}
			dec := workflows.OpsDecision{Action: action, Step: step}
			return withOpsClient(cmd.Context(), func(ctx context.Context, c client.Client) error {
				steps, err := engine.Decide(ctx, c, id, dec)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				for _, s := range steps {
					fmt.Fprintf(out, "%s: %s %q (parked %s: %s)\n", id, action, s.Step,
						s.Since.UTC().Format(time.RFC3339), s.Error)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&step, "step", "", "only this parked step (default: every parked step)")
	return cmd
}

// withOpsClient connects to the configured Temporal, runs fn and maps
// what went wrong to an exit code.
func withOpsClient(ctx context.Context, fn func(context.Context, client.Client) error) error {
	cfg, err := loadConfig(config.RoleOps)
	if err != nil {
		return err
	}
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := engine.Dial(dialCtx, engine.Options{
		HostPort:  cfg.TemporalAddress,
		Namespace: cfg.TemporalNamespace,
	})
	if err != nil {
		return withCode(ExitUnavailable, err)
	}
	defer c.Close()

	ctx, cancel = context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = fn(ctx, c)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, engine.ErrNoWorkflow),
		errors.Is(err, engine.ErrNotRunning),
		errors.Is(err, engine.ErrNothingParked):
		return withCode(ExitFailure, err)
	case unavailable(err):
		return withCode(ExitUnavailable, err)
	}
	return err
}

// unavailable tells an unreachable or unanswering Temporal (or a workflow
// with no worker to answer its query) from other failures.
func unavailable(err error) bool {
	var down *serviceerror.Unavailable
	var late *serviceerror.DeadlineExceeded
	return errors.As(err, &down) || errors.As(err, &late) ||
		errors.Is(err, context.DeadlineExceeded)
}

var workflowIDPattern = regexp.MustCompile(`^ctm-(call|message)-[1-9][0-9]*-[1-9][0-9]*$`)

// workflowIDOf reads CALL: a workflow id, or ACCOUNT/CALLID.
func workflowIDOf(arg string) (string, error) {
	if workflowIDPattern.MatchString(arg) {
		return arg, nil
	}
	account, call, ok := strings.Cut(arg, "/")
	a, aerr := strconv.ParseInt(account, 10, 64)
	c, cerr := strconv.ParseInt(call, 10, 64)
	if !ok || aerr != nil || cerr != nil || a <= 0 || c <= 0 {
		return "", usage("CALL must be a workflow id like ctm-call-1-42 or ACCOUNT/CALLID like 1/42, got %q", arg)
	}
	return workflows.CallWorkflowID(a, c), nil
}

// writeParked prints one line per parked step; now dates the ages.
func writeParked(w io.Writer, calls []engine.ParkedCall, now time.Time) error {
	if len(calls) == 0 {
		_, err := fmt.Fprintln(w, "No calls need attention.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKFLOW\tSTAGE\tLEAD\tPARKED STEP\tPARKED FOR\tERROR")
	for _, c := range calls {
		if c.StateErr != nil {
			fmt.Fprintf(tw, "%s\t?\t?\t?\t?\tstate unavailable: %v\n", c.WorkflowID, c.StateErr)
			continue
		}
		if len(c.State.Parked) == 0 {
			// Visibility lags: the step was decided on a moment ago.
			fmt.Fprintf(tw, "%s\t%s\t%d\t-\t-\tno step parked any more\n",
				c.WorkflowID, c.State.Stage, c.State.LeadID)
		}
		for _, p := range c.State.Parked {
			age := now.Sub(p.Since).Round(time.Second)
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n",
				c.WorkflowID, c.State.Stage, c.State.LeadID, p.Step, age, p.Error)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprint(w, "\nFix the cause, then: ctmflow ops retry WORKFLOW [--step STEP]\n"+
		"Give up on a step:   ctmflow ops skip WORKFLOW --step STEP\n")
	return err
}

package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ctmflow/ctmflow/config"
)

func newConfigCmd() *cobra.Command {
	var role string
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration, secrets masked",
		Long: `Print every setting ctmflow reads from the environment: its effective
value, its default, and whether the environment set it. Secrets are
masked: API_TOKEN entirely, the database password, and the webhook
secrets (their accounts are shown).

A value that does not parse or validate is an error naming the variable
(exit code 3). With --role, the settings that process requires are
checked too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch config.Role(role) {
			case "", config.RoleWebhook, config.RoleWorker, config.RoleMigrate, config.RoleDev, config.RoleReconcile:
			default:
				return usage("--role must be webhook, worker, migrate, dev or reconcile, got %q", role)
			}
			cfg, err := loadConfig(config.Role(role))
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VARIABLE\tVALUE\tSOURCE\tDEFAULT")
			for _, s := range cfg.Settings(nil) {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, orDash(s.Value), s.Source, orDash(s.Default))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "also check what this process requires: webhook, worker, migrate or dev")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

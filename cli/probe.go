package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

func newProbeCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "probe URL",
		Short: "Check a health endpoint: exit 0 when it answers 2xx",
		Long: `GET URL and exit 0 when it answers 2xx, 4 otherwise. The production
image has no shell or curl; container health checks run this instead:

  ctmflow probe http://127.0.0.1:8080/readyz`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := url.ParseRequestURI(args[0])
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
				return usage("URL must be an http:// or https:// URL, got %q", args[0])
			}
			client := &http.Client{Timeout: timeout}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, u.String(), nil)
			if err != nil {
				return usage("URL: %v", err)
			}
			resp, err := client.Do(req)
			if err != nil {
				return withCode(ExitUnavailable, fmt.Errorf("probing %s: %w", u.Redacted(), err))
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				return withCode(ExitUnavailable, fmt.Errorf("probing %s: %s", u.Redacted(), resp.Status))
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the answer")
	return cmd
}

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ctmflow/ctmflow/config"
	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/workflows"
)

// credentialsFile, in the dev data directory, holds what `ctmflow dev`
// generated: the API token and the dev account's webhook secret.
const credentialsFile = "dev-credentials.json"

type sendFlags struct {
	url     string
	dataDir string
	account int64
	secret  string
	callID  int64
	phone   string
	name    string
	rating  int
	gap     time.Duration
	uiURL   string
}

// sendSteps maps each `send` argument to the webhooks it posts, in order.
var sendSteps = map[string][]string{
	"call":   {"call-start", "call-end"},
	"start":  {"call-start"},
	"end":    {"call-end"},
	"update": {"call-update"},
	"text":   {"text-message"},
	"full":   {"call-start", "call-end", "call-update"},
}

func newSendCmd() *cobra.Command {
	var f sendFlags
	cmd := &cobra.Command{
		Use:   "send [call|start|end|update|text|full]",
		Short: "Post realistic, correctly signed CTM webhooks to a running server",
		Long: `Post realistic, correctly signed CTM webhooks to a running server.

  call    a call start, then its end with recording and transcript (default)
  start   only the start: the call is ringing
  end     only the end
  update  a later update of the ended call, with a star rating
  text    an inbound text message from the same number
  full    start, end, then the update

The account and secret come from the dev data directory unless given.
Reuse --call-id to send later stages of the same call.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			what := "call"
			if len(args) == 1 {
				what = args[0]
			}
			steps, ok := sendSteps[what]
			if !ok {
				return usage("unknown message %q: want call, start, end, update, text or full", what)
			}
			return runSend(cmd.Context(), f, steps, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.url, "url", "http://127.0.0.1:8080", "base URL of the ctmflow server")
	fl.StringVar(&f.dataDir, "data-dir", ".ctmflow", "dev data directory holding the generated credentials")
	fl.Int64Var(&f.account, "account", 0, "CTM account id (default: the dev account)")
	fl.StringVar(&f.secret, "secret", "",
		"webhook secret of the account (default: the dev secret, or CTM_WEBHOOK_SECRETS)")
	fl.Int64Var(&f.callID, "call-id", 0, "CTM call id (default: a new one)")
	fl.StringVar(&f.phone, "phone", "", "caller number in E.164 (default: a fictional 555 number)")
	fl.StringVar(&f.name, "name", "", "caller name (default: a fictional one)")
	fl.IntVar(&f.rating, "rating", 4, "star rating the update carries, 1 to 5")
	fl.DurationVar(&f.gap, "gap", 2*time.Second, "pause between the webhooks of one call")
	fl.StringVar(&f.uiURL, "ui", "http://127.0.0.1:8233", "Temporal Web UI, for the printed link")
	return cmd
}

func runSend(ctx context.Context, f sendFlags, steps []string, out io.Writer) error {
	if f.rating < 1 || f.rating > 5 {
		return usage("--rating must be between 1 and 5, got %d", f.rating)
	}
	if _, err := url.ParseRequestURI(f.url); err != nil {
		return usage("--url is not a URL: %v", err)
	}
	account, secret, err := sendCredentials(f)
	if err != nil {
		return err
	}
	if f.callID == 0 {
		f.callID = time.Now().Unix()*1000 + rand.Int64N(1000)
	}
	if f.phone == "" {
		// 555-01xx numbers are reserved for fiction in North America.
		f.phone = fmt.Sprintf("+1239555%04d", 100+rand.IntN(100))
	}
	sample := ctm.Sample{
		AccountID: account,
		CallID:    f.callID,
		Phone:     f.phone,
		Name:      f.name,
		Start:     time.Now().Add(-time.Duration(len(steps)) * f.gap),
		Rating:    f.rating,
	}

	client := &http.Client{Timeout: 30 * time.Second}
	for i, path := range steps {
		if i > 0 && f.gap > 0 {
			select {
			case <-time.After(f.gap):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		body := sampleBody(sample, path)
		if err := postSigned(ctx, client, f.url, path, account, secret, body, out); err != nil {
			return err
		}
	}

	wfID := workflows.CallWorkflowID(account, f.callID)
	if steps[0] == "text-message" {
		wfID = workflows.MessageWorkflowID(account, f.callID)
	}
	fmt.Fprintf(out, "\nworkflow  %s/namespaces/default/workflows/%s\n", strings.TrimRight(f.uiURL, "/"), wfID)
	fmt.Fprintf(out, "lead      %s/api/leads?phone=%s\n", strings.TrimRight(f.url, "/"), url.QueryEscape(f.phone))
	return nil
}

func sampleBody(s ctm.Sample, path string) []byte {
	switch path {
	case "call-end":
		return s.EndBody()
	case "call-update":
		return s.UpdateBody()
	case "text-message":
		return s.TextBody()
	}
	return s.StartBody()
}

// sendCredentials picks the account and secret: flags, then the
// environment, then the dev data directory.
func sendCredentials(f sendFlags) (int64, string, error) {
	if f.secret != "" {
		if f.account <= 0 {
			return 0, "", usage("--secret needs --account")
		}
		return f.account, f.secret, nil
	}
	if env := os.Getenv("CTM_WEBHOOK_SECRETS"); env != "" {
		var s config.Secrets
		if err := s.UnmarshalText([]byte(env)); err != nil {
			return 0, "", withCode(ExitConfig, fmt.Errorf("CTM_WEBHOOK_SECRETS: %w", err))
		}
		if f.account > 0 {
			secret, ok := s[f.account]
			if !ok {
				return 0, "", withCode(ExitConfig, fmt.Errorf("CTM_WEBHOOK_SECRETS has no secret for account %d",
					f.account))
			}
			return f.account, secret, nil
		}
		if len(s) == 1 {
			for id, secret := range s {
				return id, secret, nil
			}
		}
		return 0, "", usage("CTM_WEBHOOK_SECRETS lists several accounts: pick one with --account")
	}

	path := filepath.Join(f.dataDir, credentialsFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, "", withCode(ExitConfig, fmt.Errorf(
			"no credentials: start `ctmflow dev` first, or pass --account and --secret (%w)", err))
	}
	var c struct {
		AccountID     int64  `json:"account_id"`
		WebhookSecret string `json:"webhook_secret"`
	}
	if err := json.Unmarshal(b, &c); err != nil || c.WebhookSecret == "" {
		return 0, "", withCode(ExitConfig, fmt.Errorf("%s is damaged", path))
	}
	if f.account > 0 && f.account != c.AccountID {
		return 0, "", usage("the dev credentials are for account %d; pass --secret for account %d",
			c.AccountID, f.account)
	}
	return c.AccountID, c.WebhookSecret, nil
}

func postSigned(
	ctx context.Context, client *http.Client, base, path string,
	account int64, secret string, body []byte, out io.Writer,
) error {
	endpoint := strings.TrimRight(base, "/") + "/webhooks/ctm/" + path
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(ctm.HeaderTime, ts)
	req.Header.Set(ctm.HeaderSignature, ctm.Sign(secret, ts, body))

	resp, err := client.Do(req)
	if err != nil {
		return withCode(ExitUnavailable, fmt.Errorf("posting %s: %w", path, err))
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))

	var ok struct {
		DeliveryID int64  `json:"delivery_id"`
		Status     string `json:"status"`
	}
	if resp.StatusCode < 300 && json.Unmarshal(reply, &ok) == nil {
		fmt.Fprintf(out, "%-13s %d %-9s delivery %d (account %d)\n", path, resp.StatusCode, ok.Status, ok.DeliveryID, account)
		return nil
	}
	var bad struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(reply, &bad) == nil && bad.Error.Code != "" {
		return withCode(ExitRejected, fmt.Errorf("%s refused: %d %s: %s",
			path, resp.StatusCode, bad.Error.Code, bad.Error.Message))
	}
	return withCode(ExitRejected, errors.New(path+" refused: "+resp.Status))
}

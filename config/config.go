// Package config is the one place ctmflow reads its environment. Every
// setting has a default, a unit where it has one, and validation; a wrong
// value stops the process at start with an error naming the variable.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/nyaruka/phonenumbers"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/egress"
	"github.com/ctmflow/ctmflow/models"
)

// Config is every setting of every ctmflow process.
type Config struct {
	// DatabaseURL is the CRM database: postgres://… in production, or
	// sqlite:PATH. Required except in dev, where it defaults to a SQLite
	// file in the data directory.
	DatabaseURL string `env:"DATABASE_URL" mask:"url"`
	// DatabaseMaxConns caps the connection pool. Default 20.
	DatabaseMaxConns int `env:"DATABASE_MAX_CONNS" envDefault:"20"`

	// TemporalAddress is the Temporal frontend, host:port.
	// Default 127.0.0.1:7233.
	TemporalAddress string `env:"TEMPORAL_ADDRESS" envDefault:"127.0.0.1:7233"`
	// TemporalNamespace. Default "default".
	TemporalNamespace string `env:"TEMPORAL_NAMESPACE" envDefault:"default"`
	// TaskQueue the workflows run on. Default "ctmflow".
	TaskQueue string `env:"TEMPORAL_TASK_QUEUE" envDefault:"ctmflow"`

	// WebhookSecrets maps CTM account ids to the secret that signs their
	// webhooks: "123=secret,456=other". Required by the webhook process.
	WebhookSecrets Secrets `env:"CTM_WEBHOOK_SECRETS" mask:"accounts"`
	// APIToken is the bearer token of /api. Required by the webhook
	// process; generated and printed by dev when unset.
	APIToken string `env:"API_TOKEN" mask:"secret"`

	// HTTPAddr is where the webhook process listens. Default :8080.
	HTTPAddr string `env:"HTTP_ADDR" envDefault:":8080"`
	// MetricsAddr is where the worker serves /metrics, /healthz and
	// /readyz, since it serves no HTTP otherwise. The webhook process
	// serves them on HTTPAddr instead. Default :9090.
	MetricsAddr string `env:"METRICS_ADDR" envDefault:":9090"`
	// MaxBodyBytes caps a webhook body, in bytes. Default 1 MiB.
	MaxBodyBytes int64 `env:"WEBHOOK_MAX_BODY_BYTES" envDefault:"1048576"`
	// PhoneRegion reads numbers without a country code (ISO 3166 code).
	// Default US.
	PhoneRegion string `env:"PHONE_DEFAULT_REGION" envDefault:"US"`

	// CallEndTimeout is how long a call waits for its end webhook, a Go
	// duration. Default 4h.
	CallEndTimeout time.Duration `env:"CALL_END_TIMEOUT" envDefault:"4h"`
	// StepRetryTimeout is how long a failing workflow step retries before
	// it parks for ops, a Go duration. The first step, which creates the
	// lead, parks after at most 5m whatever this says. Default 1h.
	StepRetryTimeout time.Duration `env:"STEP_RETRY_TIMEOUT" envDefault:"1h"`
	// InboxRetention is how long a processed delivery keeps its raw body,
	// a Go duration; 0 keeps bodies forever. Default 168h (7 days).
	InboxRetention time.Duration `env:"INBOX_RETENTION" envDefault:"168h"`
	// InboxLease is how long a webhook replica owns a delivery it claimed
	// before another may take it over, a Go duration: the longest a
	// delivery waits when the replica holding it dies. Default 30s.
	InboxLease time.Duration `env:"INBOX_LEASE" envDefault:"30s"`

	// CTMAPIURL is the base URL of CTM's REST API, asked for a call whose
	// end webhook never came, by `ctmflow reconcile`, and for recordings.
	// Recording URLs on any other host are refused. Default
	// https://api.calltrackingmetrics.com.
	CTMAPIURL string `env:"CTM_API_URL" envDefault:"https://api.calltrackingmetrics.com" mask:"url"`
	// CTMAPIKeys maps CTM account ids to their API access and secret keys:
	// "123=access:secret,456=access2:secret2". An account without keys
	// cannot be asked: its calls whose end never came are marked
	// end_missing at once, and its recordings cannot be played.
	CTMAPIKeys APIKeys `env:"CTM_API_KEYS" mask:"accounts"`
	// CreateOnlyFields are the lead fields CTM sets only while they are
	// empty (first-touch attribution), comma-separated; "none" lets CTM
	// update every field it set. Default source,medium,campaign.
	CreateOnlyFields FieldList `env:"CTM_CREATE_ONLY_FIELDS" envDefault:"source,medium,campaign"`
	// CallEndMaxChecks is how many times a call whose end never came asks
	// CTM's API before it is marked end_missing. Default 4.
	CallEndMaxChecks int `env:"CALL_END_MAX_CHECKS" envDefault:"4"`
	// CallEndRecheck is how long a call waits again, a Go duration, when
	// CTM's API says it is still in progress. Default 1h.
	CallEndRecheck time.Duration `env:"CALL_END_RECHECK" envDefault:"1h"`

	// WorkerCacheSize bounds the workflows a worker keeps in memory.
	// Default 10000.
	WorkerCacheSize int `env:"WORKER_CACHE_SIZE" envDefault:"10000"`
	// ShutdownTimeout is how long a stopping process waits for work in
	// flight. Default 20s.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`

	// OutboundAllowlist lists networks (comma-separated CIDRs or
	// addresses) that trigger destinations may reach although private:
	// on-premise receivers, and tests. Default empty: every private,
	// loopback, link-local and metadata address is refused.
	OutboundAllowlist Allowlist `env:"OUTBOUND_ALLOWLIST"`
	// TriggerRetryInitial is the wait after a delivery's first failed
	// attempt; it doubles per attempt, with jitter. Default 30s.
	TriggerRetryInitial time.Duration `env:"TRIGGER_RETRY_INITIAL" envDefault:"30s"`
	// TriggerRetryMax caps the wait between two attempts. Default 1h.
	TriggerRetryMax time.Duration `env:"TRIGGER_RETRY_MAX" envDefault:"1h"`
	// TriggerRetryFor is how long a delivery is retried before it is
	// given up as failed. Default 24h.
	TriggerRetryFor time.Duration `env:"TRIGGER_RETRY_FOR" envDefault:"24h"`
	// TriggerHTTPTimeout bounds one request to a destination. Default 10s.
	TriggerHTTPTimeout time.Duration `env:"TRIGGER_HTTP_TIMEOUT" envDefault:"10s"`
	// TriggerSweepInterval is how often the worker looks for lead events
	// and deliveries that were committed but not handed on (a publish that
	// failed, a process that died). Default 5s.
	TriggerSweepInterval time.Duration `env:"TRIGGER_SWEEP_INTERVAL" envDefault:"5s"`
	// TriggerRotationOverlap is how long a rotated-out signing secret
	// keeps signing beside the new one. Default 24h.
	TriggerRotationOverlap time.Duration `env:"TRIGGER_ROTATION_OVERLAP" envDefault:"24h"`

	// LogFormat is json or text. Default json.
	LogFormat string `env:"LOG_FORMAT" envDefault:"json"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
}

// Role names a process, for the settings it requires.
type Role string

// Roles.
const (
	RoleDev     Role = "dev"
	RoleWebhook Role = "webhook"
	RoleWorker  Role = "worker"
	RoleMigrate Role = "migrate"
	// RoleReconcile is `ctmflow reconcile`, which needs CTM API keys.
	RoleReconcile Role = "reconcile"
	// RoleOps is the ops tools, which need only Temporal.
	RoleOps Role = "ops"
)

// Load reads the configuration from environ (nil: the process
// environment) and validates it for role.
func Load(role Role, environ map[string]string) (*Config, error) {
	var cfg Config
	opts := env.Options{Environment: environ}
	if err := env.ParseWithOptions(&cfg, opts); err != nil {
		return nil, named(err)
	}
	if err := cfg.Validate(role); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Validate checks the settings role needs.
func (c *Config) Validate(role Role) error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
	}

	needsDB := role == RoleWebhook || role == RoleWorker || role == RoleMigrate
	switch {
	case c.DatabaseURL == "" && needsDB:
		bad("DATABASE_URL", "required (postgres://user@host/db or sqlite:PATH)")
	case c.DatabaseURL != "" && !validDatabaseURL(c.DatabaseURL):
		bad("DATABASE_URL", "must start with postgres://, postgresql:// or sqlite:")
	}
	if role == RoleWebhook {
		if len(c.WebhookSecrets) == 0 {
			bad("CTM_WEBHOOK_SECRETS", "required: account_id=secret pairs, comma-separated")
		}
		if c.APIToken == "" {
			bad("API_TOKEN", "required: the bearer token of /api")
		}
	}
	if c.APIToken != "" && len(c.APIToken) < 16 {
		bad("API_TOKEN", "must be at least 16 characters")
	}
	if c.DatabaseMaxConns < 1 {
		bad("DATABASE_MAX_CONNS", "must be at least 1, got %d", c.DatabaseMaxConns)
	}
	if _, _, err := net.SplitHostPort(c.TemporalAddress); err != nil {
		bad("TEMPORAL_ADDRESS", "must be host:port, got %q", c.TemporalAddress)
	}
	if c.TemporalNamespace == "" {
		bad("TEMPORAL_NAMESPACE", "must not be empty")
	}
	if c.TaskQueue == "" {
		bad("TEMPORAL_TASK_QUEUE", "must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		bad("HTTP_ADDR", "must be [host]:port, got %q", c.HTTPAddr)
	}
	if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
		bad("METRICS_ADDR", "must be [host]:port, got %q", c.MetricsAddr)
	}
	if c.MaxBodyBytes < 1024 {
		bad("WEBHOOK_MAX_BODY_BYTES", "must be at least 1024, got %d", c.MaxBodyBytes)
	}
	if _, ok := phonenumbers.GetSupportedRegions()[strings.ToUpper(c.PhoneRegion)]; !ok {
		bad("PHONE_DEFAULT_REGION", "unknown region %q (want an ISO 3166 code like US)", c.PhoneRegion)
	}
	if c.CallEndTimeout < time.Second {
		bad("CALL_END_TIMEOUT", "must be at least 1s, got %s", c.CallEndTimeout)
	}
	if u, err := url.Parse(c.CTMAPIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("CTM_API_URL", "must be an http(s) URL like https://api.calltrackingmetrics.com, got %q", c.CTMAPIURL)
	}
	if role == RoleReconcile && len(c.CTMAPIKeys) == 0 {
		bad("CTM_API_KEYS", "required: account_id=access_key:secret_key pairs, comma-separated")
	}
	for _, f := range c.CreateOnlyFields {
		if !slices.Contains(models.LeadFields, f) {
			bad("CTM_CREATE_ONLY_FIELDS", "unknown lead field %q (want some of %s, or none)",
				f, strings.Join(models.LeadFields, ","))
		}
	}
	if c.CallEndMaxChecks < 1 {
		bad("CALL_END_MAX_CHECKS", "must be at least 1, got %d", c.CallEndMaxChecks)
	}
	if c.CallEndRecheck < time.Second {
		bad("CALL_END_RECHECK", "must be at least 1s, got %s", c.CallEndRecheck)
	}
	if c.StepRetryTimeout < time.Second {
		bad("STEP_RETRY_TIMEOUT", "must be at least 1s, got %s", c.StepRetryTimeout)
	}
	if c.InboxRetention < 0 {
		bad("INBOX_RETENTION", "must not be negative")
	}
	if c.InboxLease < time.Second {
		bad("INBOX_LEASE", "must be at least 1s, got %s", c.InboxLease)
	}
	if c.WorkerCacheSize < 1 {
		bad("WORKER_CACHE_SIZE", "must be at least 1, got %d", c.WorkerCacheSize)
	}
	if c.ShutdownTimeout < 0 {
		bad("SHUTDOWN_TIMEOUT", "must not be negative")
	}
	if c.TriggerRetryInitial < time.Millisecond {
		bad("TRIGGER_RETRY_INITIAL", "must be at least 1ms, got %s", c.TriggerRetryInitial)
	}
	if c.TriggerRetryMax < c.TriggerRetryInitial {
		bad("TRIGGER_RETRY_MAX", "must be at least TRIGGER_RETRY_INITIAL (%s), got %s",
			c.TriggerRetryInitial, c.TriggerRetryMax)
	}
	if c.TriggerRetryFor < c.TriggerRetryInitial {
		bad("TRIGGER_RETRY_FOR", "must be at least TRIGGER_RETRY_INITIAL (%s), got %s",
			c.TriggerRetryInitial, c.TriggerRetryFor)
	}
	if c.TriggerHTTPTimeout < 100*time.Millisecond || c.TriggerHTTPTimeout > 5*time.Minute {
		bad("TRIGGER_HTTP_TIMEOUT", "must be between 100ms and 5m, got %s", c.TriggerHTTPTimeout)
	}
	if c.TriggerSweepInterval < 10*time.Millisecond {
		bad("TRIGGER_SWEEP_INTERVAL", "must be at least 10ms, got %s", c.TriggerSweepInterval)
	}
	if c.TriggerRotationOverlap < 0 {
		bad("TRIGGER_ROTATION_OVERLAP", "must not be negative")
	}
	if f := strings.ToLower(c.LogFormat); f != "json" && f != "text" {
		bad("LOG_FORMAT", "must be json or text, got %q", c.LogFormat)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("LOG_LEVEL", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	return errors.Join(errs...)
}

func validDatabaseURL(u string) bool {
	for _, p := range []string{"postgres://", "postgresql://", "sqlite:"} {
		if strings.HasPrefix(u, p) {
			return true
		}
	}
	return false
}

// RedactURL hides the password of a database URL, for printing.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Secrets maps CTM account ids to webhook secrets.
type Secrets map[int64]string

// UnmarshalText reads "123=secret,456=other".
func (s *Secrets) UnmarshalText(text []byte) error {
	out := Secrets{}
	for i, pair := range strings.Split(string(text), ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		id, secret, ok := strings.Cut(pair, "=")
		account, err := strconv.ParseInt(strings.TrimSpace(id), 10, 64)
		if !ok || err != nil || account <= 0 || strings.TrimSpace(secret) == "" {
			// The entry itself is not quoted: it may hold a secret.
			return fmt.Errorf("entry %d is not account_id=secret", i+1)
		}
		if _, dup := out[account]; dup {
			return fmt.Errorf("account %d is listed twice", account)
		}
		out[account] = strings.TrimSpace(secret)
	}
	*s = out
	return nil
}

// String lists the accounts, never the secrets.
func (s Secrets) String() string {
	ids := make([]string, 0, len(s))
	for id := range s {
		ids = append(ids, strconv.FormatInt(id, 10))
	}
	sort.Strings(ids)
	return strings.Join(ids, ",")
}

// APIKeys maps CTM account ids to their REST API credentials.
type APIKeys map[int64]ctm.Credentials

// UnmarshalText reads "123=access:secret,456=access2:secret2".
func (k *APIKeys) UnmarshalText(text []byte) error {
	out := APIKeys{}
	for i, pair := range strings.Split(string(text), ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		id, keys, ok := strings.Cut(pair, "=")
		access, secret, ok2 := strings.Cut(keys, ":")
		account, err := strconv.ParseInt(strings.TrimSpace(id), 10, 64)
		access, secret = strings.TrimSpace(access), strings.TrimSpace(secret)
		if !ok || !ok2 || err != nil || account <= 0 || access == "" || secret == "" {
			// The entry itself is not quoted: it holds keys.
			return fmt.Errorf("entry %d is not account_id=access_key:secret_key", i+1)
		}
		if _, dup := out[account]; dup {
			return fmt.Errorf("account %d is listed twice", account)
		}
		out[account] = ctm.Credentials{AccessKey: access, SecretKey: secret}
	}
	*k = out
	return nil
}

// String lists the accounts, never the keys.
func (k APIKeys) String() string {
	ids := make([]string, 0, len(k))
	for id := range k {
		ids = append(ids, strconv.FormatInt(id, 10))
	}
	sort.Strings(ids)
	return strings.Join(ids, ",")
}

// FieldList is a comma-separated list of lead fields; "none" is empty.
type FieldList []string

// String renders the list as CTM_CREATE_ONLY_FIELDS takes it.
func (f FieldList) String() string {
	if len(f) == 0 {
		return "none"
	}
	return strings.Join(f, ",")
}

// UnmarshalText reads "source,medium" or "none".
func (f *FieldList) UnmarshalText(text []byte) error {
	out := FieldList{}
	if strings.EqualFold(strings.TrimSpace(string(text)), "none") {
		*f = out
		return nil
	}
	for _, name := range strings.Split(string(text), ",") {
		if name = strings.ToLower(strings.TrimSpace(name)); name != "" && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	*f = out
	return nil
}

// Allowlist is a list of networks, read from comma-separated CIDRs or
// addresses.
type Allowlist []netip.Prefix

// String lists the networks as OUTBOUND_ALLOWLIST takes them.
func (a Allowlist) String() string {
	items := make([]string, len(a))
	for i, p := range a {
		items[i] = p.String()
	}
	return strings.Join(items, ",")
}

// UnmarshalText reads "10.1.0.0/16,127.0.0.1".
func (a *Allowlist) UnmarshalText(text []byte) error {
	prefixes, err := egress.ParseAllowlist(string(text))
	if err != nil {
		return err
	}
	*a = prefixes
	return nil
}

// named rewrites the env library's errors, which name struct fields, to
// name the environment variable instead.
func named(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	var out []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			out = append(out, fmt.Errorf("%s: %w", envName(pe.Name), pe.Err))
			continue
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

func envName(field string) string {
	f, ok := reflect.TypeFor[Config]().FieldByName(field)
	if !ok {
		return field
	}
	return f.Tag.Get("env")
}

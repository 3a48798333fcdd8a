package config

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func webhookEnv() map[string]string {
	return map[string]string{
		"DATABASE_URL":        "postgres://ctm@db/ctmflow",
		"CTM_WEBHOOK_SECRETS": "101=alpha, 202=beta",
		"API_TOKEN":           "0123456789abcdef",
	}
}

func TestLoadDefaults(t *testing.T) {
	cfg, err := Load(RoleWebhook, webhookEnv())
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:7233", cfg.TemporalAddress)
	assert.Equal(t, "default", cfg.TemporalNamespace)
	assert.Equal(t, "ctmflow", cfg.TaskQueue)
	assert.Equal(t, ":8080", cfg.HTTPAddr)
	assert.Equal(t, 4*time.Hour, cfg.CallEndTimeout)
	assert.Equal(t, time.Hour, cfg.StepRetryTimeout)
	assert.Equal(t, int64(1<<20), cfg.MaxBodyBytes)
	assert.Equal(t, 168*time.Hour, cfg.InboxRetention)
	assert.Equal(t, 30*time.Second, cfg.InboxLease)
	assert.Equal(t, Secrets{101: "alpha", 202: "beta"}, cfg.WebhookSecrets)
	assert.Equal(t, "https://api.calltrackingmetrics.com", cfg.CTMAPIURL)
	assert.Empty(t, cfg.CTMAPIKeys)
	assert.Equal(t, FieldList{"source", "medium", "campaign"}, cfg.CreateOnlyFields)
	assert.Equal(t, 4, cfg.CallEndMaxChecks)
	assert.Equal(t, time.Hour, cfg.CallEndRecheck)
}

func TestCTMSettings(t *testing.T) {
	env := webhookEnv()
	env["CTM_API_KEYS"] = "101=ak1:sk1, 202=ak2:sk2"
	env["CTM_CREATE_ONLY_FIELDS"] = "none"
	cfg, err := Load(RoleReconcile, env)
	require.NoError(t, err)
	assert.Equal(t, APIKeys{
		101: {AccessKey: "ak1", SecretKey: "sk1"},
		202: {AccessKey: "ak2", SecretKey: "sk2"},
	}, cfg.CTMAPIKeys)
	assert.Equal(t, "101,202", cfg.CTMAPIKeys.String(), "accounts, never keys")
	assert.Equal(t, FieldList{}, cfg.CreateOnlyFields)

	env["CTM_API_KEYS"] = "101=ak1:topsecret,202"
	_, err = Load(RoleWebhook, env)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "topsecret")
}

func TestLoadNamesTheBadVariable(t *testing.T) {
	cases := []struct {
		name string
		role Role
		set  map[string]string
		drop string
		want string
	}{
		{name: "database required by the webhook", role: RoleWebhook,
			drop: "DATABASE_URL", want: "DATABASE_URL: required"},
		{name: "database required by the worker", role: RoleWorker,
			drop: "DATABASE_URL", want: "DATABASE_URL: required"},
		{name: "secrets required by the webhook", role: RoleWebhook,
			drop: "CTM_WEBHOOK_SECRETS", want: "CTM_WEBHOOK_SECRETS: required"},
		{name: "token required by the webhook", role: RoleWebhook,
			drop: "API_TOKEN", want: "API_TOKEN: required"},
		{name: "malformed duration", role: RoleWebhook,
			set: map[string]string{"CALL_END_TIMEOUT": "forever"}, want: "CALL_END_TIMEOUT:"},
		{name: "step retry too short", role: RoleWorker,
			set: map[string]string{"STEP_RETRY_TIMEOUT": "10ms"}, want: "STEP_RETRY_TIMEOUT: must be at least 1s"},
		{name: "malformed integer", role: RoleWebhook,
			set: map[string]string{"DATABASE_MAX_CONNS": "many"}, want: "DATABASE_MAX_CONNS:"},
		{name: "malformed secrets", role: RoleWebhook,
			set:  map[string]string{"CTM_WEBHOOK_SECRETS": "101:alpha"},
			want: "CTM_WEBHOOK_SECRETS: entry 1 is not account_id=secret"},
		{name: "account listed twice", role: RoleWebhook,
			set: map[string]string{"CTM_WEBHOOK_SECRETS": "1=a,1=b"}, want: "CTM_WEBHOOK_SECRETS: account 1 is listed twice"},
		{name: "unsupported database", role: RoleWorker,
			set: map[string]string{"DATABASE_URL": "mysql://x"}, want: "DATABASE_URL: must start with"},
		{name: "short token", role: RoleWebhook,
			set: map[string]string{"API_TOKEN": "short"}, want: "API_TOKEN: must be at least 16"},
		{name: "bad temporal address", role: RoleWorker,
			set: map[string]string{"TEMPORAL_ADDRESS": "temporal"}, want: "TEMPORAL_ADDRESS: must be host:port"},
		{name: "bad http address", role: RoleWebhook,
			set: map[string]string{"HTTP_ADDR": "8080"}, want: "HTTP_ADDR:"},
		{name: "unknown phone region", role: RoleWebhook,
			set: map[string]string{"PHONE_DEFAULT_REGION": "XX"}, want: "PHONE_DEFAULT_REGION: unknown region"},
		{name: "tiny body limit", role: RoleWebhook,
			set: map[string]string{"WEBHOOK_MAX_BODY_BYTES": "10"}, want: "WEBHOOK_MAX_BODY_BYTES:"},
		{name: "unknown log format", role: RoleWebhook,
			set: map[string]string{"LOG_FORMAT": "xml"}, want: "LOG_FORMAT:"},
		{name: "unknown log level", role: RoleWebhook,
			set: map[string]string{"LOG_LEVEL": "loud"}, want: "LOG_LEVEL:"},
		{name: "malformed api keys", role: RoleWebhook,
			set:  map[string]string{"CTM_API_KEYS": "101=onlyonekey"},
			want: "CTM_API_KEYS: entry 1 is not account_id=access_key:secret_key"},
		{name: "api keys required by reconcile", role: RoleReconcile, want: "CTM_API_KEYS: required"},
		{name: "bad api url", role: RoleWebhook, set: map[string]string{"CTM_API_URL": "ftp://ctm"},
			want: "CTM_API_URL: must be an http(s) URL"},
		{name: "unknown create-only field", role: RoleWebhook,
			set:  map[string]string{"CTM_CREATE_ONLY_FIELDS": "source,phone"},
			want: `CTM_CREATE_ONLY_FIELDS: unknown lead field "phone"`},
		{name: "negative checks", role: RoleWebhook, set: map[string]string{"CALL_END_MAX_CHECKS": "-1"},
			want: "CALL_END_MAX_CHECKS:"},
		{name: "tiny recheck", role: RoleWebhook, set: map[string]string{"CALL_END_RECHECK": "10ms"},
			want: "CALL_END_RECHECK:"},
		{name: "tiny inbox lease", role: RoleWebhook, set: map[string]string{"INBOX_LEASE": "500ms"},
			want: "INBOX_LEASE: must be at least 1s"},
		{name: "malformed inbox lease", role: RoleWebhook, set: map[string]string{"INBOX_LEASE": "soon"},
			want: "INBOX_LEASE:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := webhookEnv()
			delete(env, tc.drop)
			for k, v := range tc.set {
				env[k] = v
			}
			_, err := Load(tc.role, env)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	env := webhookEnv()
	env["CTM_WEBHOOK_SECRETS"] = "101=topsecret,oops"
	_, err := Load(RoleWebhook, env)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "topsecret")

	s := Secrets{101: "alpha", 5: "beta"}
	assert.Equal(t, "101,5", s.String())
}

func TestDevNeedsNoDatabaseOrSecrets(t *testing.T) {
	_, err := Load(RoleDev, map[string]string{})
	assert.NoError(t, err)
}

func TestRedactURL(t *testing.T) {
	got := RedactURL("postgres://ctm:hunter2@db:5432/ctmflow?sslmode=require")
	assert.False(t, strings.Contains(got, "hunter2"))
	assert.Contains(t, got, "ctm:xxxxx@db:5432")
	assert.Equal(t, "sqlite:.ctmflow/ctmflow.db", RedactURL("sqlite:.ctmflow/ctmflow.db"))
}

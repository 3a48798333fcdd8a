package config

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func settingsEnv() map[string]string {
	return map[string]string{
		"DATABASE_URL":        "postgres://ctmflow:hunter2-db@db:5432/ctmflow?sslmode=disable",
		"CTM_WEBHOOK_SECRETS": "12=s3cret-twelve,7=s3cret-seven",
		"API_TOKEN":           "tok_0123456789abcdef",
	}
}

func TestMetricsAddrIsValidated(t *testing.T) {
	env := settingsEnv()
	env["METRICS_ADDR"] = "9090"
	_, err := Load(RoleWorker, env)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "METRICS_ADDR")
}

func TestSettings(t *testing.T) {
	env := settingsEnv()
	env["CALL_END_TIMEOUT"] = "2h"
	cfg, err := Load(RoleWebhook, env)
	require.NoError(t, err)

	got := map[string]Setting{}
	for _, s := range cfg.Settings(env) {
		got[s.Name] = s
	}

	t.Run("every variable is listed", func(t *testing.T) {
		assert.Len(t, got, len(Names()))
		for _, name := range Names() {
			assert.Contains(t, got, name)
		}
	})
	t.Run("sources", func(t *testing.T) {
		assert.Equal(t, Setting{Name: "CALL_END_TIMEOUT", Value: "2h0m0s", Default: "4h", Source: SourceEnv},
			got["CALL_END_TIMEOUT"])
		assert.Equal(t, Setting{Name: "HTTP_ADDR", Value: ":8080", Default: ":8080", Source: SourceDefault},
			got["HTTP_ADDR"])
	})
	t.Run("secrets are masked", func(t *testing.T) {
		assert.Equal(t, Masked, got["API_TOKEN"].Value)
		assert.Equal(t, "12="+Masked+",7="+Masked, got["CTM_WEBHOOK_SECRETS"].Value)
		assert.Equal(t, "postgres://ctmflow:xxxxx@db:5432/ctmflow?sslmode=disable",
			got["DATABASE_URL"].Value)
		for _, s := range got {
			for _, secret := range []string{"hunter2", "s3cret", "0123456789abcdef"} {
				assert.NotContains(t, s.Value, secret, s.Name)
			}
		}
	})
	t.Run("a database url that does not parse is masked whole", func(t *testing.T) {
		c := *cfg
		c.DatabaseURL = "postgres://u:p%zz@db/x"
		for _, s := range c.Settings(env) {
			if s.Name == "DATABASE_URL" {
				assert.Equal(t, Masked, s.Value)
			}
		}
	})
}

// A variable whose name says it holds a secret must say how to mask it,
// so that a setting added later cannot be printed in clear by accident.
func TestSecretsHaveAMask(t *testing.T) {
	secretish := regexp.MustCompile(`SECRET|TOKEN|PASSWORD|KEY|_URL$|DSN`)
	cfg := &Config{}
	for _, s := range cfg.Settings(map[string]string{}) {
		if !secretish.MatchString(s.Name) {
			continue
		}
		c := *cfg
		raw := "postgres://user:topsecret@host/db"
		setField(t, &c, s.Name, raw)
		for _, again := range c.Settings(map[string]string{}) {
			if again.Name == s.Name {
				assert.NotContains(t, again.Value, "topsecret", "%s prints in clear", s.Name)
			}
		}
	}
}

func setField(t *testing.T, c *Config, name, value string) {
	t.Helper()
	env := map[string]string{name: value}
	switch name {
	case "CTM_WEBHOOK_SECRETS":
		env[name] = "1=topsecret"
	case "CTM_API_KEYS":
		env[name] = "1=access:topsecret"
	case "CTM_API_URL":
		env[name] = "https://user:topsecret@ctm.example"
	}
	loaded, err := Load(RoleDev, env)
	require.NoError(t, err, name)
	*c = *loaded
}

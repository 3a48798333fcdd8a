package config_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/config"
)

func TestTriggerSettings(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		cfg, err := config.Load(config.RoleDev, map[string]string{})
		require.NoError(t, err)
		assert.Empty(t, cfg.OutboundAllowlist)
		assert.Equal(t, 30*time.Second, cfg.TriggerRetryInitial)
		assert.Equal(t, time.Hour, cfg.TriggerRetryMax)
		assert.Equal(t, 24*time.Hour, cfg.TriggerRetryFor)
		assert.Equal(t, 10*time.Second, cfg.TriggerHTTPTimeout)
		assert.Equal(t, 5*time.Second, cfg.TriggerSweepInterval)
		assert.Equal(t, 24*time.Hour, cfg.TriggerRotationOverlap)
	})

	t.Run("allowlist", func(t *testing.T) {
		cfg, err := config.Load(config.RoleDev, map[string]string{"OUTBOUND_ALLOWLIST": "10.8.0.0/16, 127.0.0.1"})
		require.NoError(t, err)
		assert.Equal(t, config.Allowlist{
			netip.MustParsePrefix("10.8.0.0/16"), netip.MustParsePrefix("127.0.0.1/32"),
		}, cfg.OutboundAllowlist)
	})

	bad := map[string]map[string]string{
		"OUTBOUND_ALLOWLIST":       {"OUTBOUND_ALLOWLIST": "10.0.0.0/8,intranet"},
		"TRIGGER_RETRY_MAX":        {"TRIGGER_RETRY_INITIAL": "1m", "TRIGGER_RETRY_MAX": "30s"},
		"TRIGGER_RETRY_FOR":        {"TRIGGER_RETRY_FOR": "10s"},
		"TRIGGER_HTTP_TIMEOUT":     {"TRIGGER_HTTP_TIMEOUT": "1h"},
		"TRIGGER_SWEEP_INTERVAL":   {"TRIGGER_SWEEP_INTERVAL": "1ms"},
		"TRIGGER_ROTATION_OVERLAP": {"TRIGGER_ROTATION_OVERLAP": "-1h"},
	}
	for name, env := range bad {
		t.Run("bad "+name, func(t *testing.T) {
			_, err := config.Load(config.RoleDev, env)
			require.Error(t, err)
			assert.Contains(t, err.Error(), name)
		})
	}
}

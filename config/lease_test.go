package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/config"
)

func TestInboxLease(t *testing.T) {
	env := map[string]string{"DATABASE_URL": "sqlite:x.db"}
	cfg, err := config.Load(config.RoleWorker, env)
	require.NoError(t, err)
	assert.Equal(t, 30*time.Second, cfg.InboxLease, "default")

	env["INBOX_LEASE"] = "5s"
	cfg, err = config.Load(config.RoleWorker, env)
	require.NoError(t, err)
	assert.Equal(t, 5*time.Second, cfg.InboxLease)

	for _, bad := range []string{"500ms", "soon"} {
		env["INBOX_LEASE"] = bad
		_, err = config.Load(config.RoleWorker, env)
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "INBOX_LEASE", "the error names the variable")
	}
}

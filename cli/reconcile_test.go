package cli

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/ctm/ctmtest"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
)

func TestReconcileCommand(t *testing.T) {
	const account = 801
	day := time.Date(2026, 5, 6, 9, 0, 0, 0, time.UTC)
	api := ctmtest.New(t)
	api.AddAccount(account)
	for id := int64(1); id <= 3; id++ {
		api.PutCall(ctm.Sample{AccountID: account, CallID: id, Phone: "+1239555070" + strconv.Itoa(int(id)),
			Start: day.Add(time.Duration(id) * time.Minute)}.EndBody())
	}
	dbURL := testenv.SQLiteURL(t)
	st := testenv.Store(t, dbURL)
	t.Setenv("DATABASE_URL", dbURL)
	t.Setenv("CTM_API_URL", api.URL())
	t.Setenv("CTM_API_KEYS", api.Keys())
	t.Setenv("LOG_LEVEL", "error")
	args := []string{"reconcile", "--account", strconv.Itoa(account),
		"--since", "2026-05-06", "--until", "2026-05-07T00:00:00Z", "--per-page", "2"}

	code, stdout, stderr := run(args...)
	require.Equal(t, ExitOK, code, stderr)
	golden(t, "reconcile_first.golden", stdout)
	assert.Contains(t, stderr, "reconcile: page 1/2")
	assert.Contains(t, stderr, "reconcile: page 2/2")
	pending, err := st.ListDeliveries(t.Context(), store.DeliveryFilter{Status: models.DeliveryPending})
	require.NoError(t, err)
	assert.Len(t, pending, 3)

	code, stdout, stderr = run(args...)
	require.Equal(t, ExitOK, code, stderr)
	golden(t, "reconcile_again.golden", stdout)
	pending, err = st.ListDeliveries(t.Context(), store.DeliveryFilter{Status: models.DeliveryPending})
	require.NoError(t, err)
	assert.Len(t, pending, 3, "a second run stores nothing twice")

	t.Run("--wait gives up when nothing applies the deliveries", func(t *testing.T) {
		code, _, stderr := run(append(args, "--wait", "1s")...)
		assert.Equal(t, ExitUnavailable, code)
		assert.Contains(t, stderr, "3 of 3 deliveries not applied within 1s")
	})
}

func TestReconcileExitCodes(t *testing.T) {
	const account = 802
	api := ctmtest.New(t)
	api.AddAccount(account)
	dbURL := testenv.SQLiteURL(t)
	testenv.Store(t, dbURL)
	t.Setenv("DATABASE_URL", dbURL)
	t.Setenv("CTM_API_URL", api.URL())
	t.Setenv("LOG_LEVEL", "error")
	ok := []string{"reconcile", "--account", "802", "--since", "24h"}

	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{name: "no account", args: []string{"reconcile", "--since", "24h"}, code: ExitUsage, want: "--account"},
		{name: "no since", args: []string{"reconcile", "--account", "802"}, code: ExitUsage,
			want: "--since is required"},
		{name: "unreadable since", args: []string{"reconcile", "--account", "802", "--since", "last tuesday"},
			code: ExitUsage, want: `"last tuesday" is not RFC 3339`},
		{name: "until before since", args: append(ok, "--until", "2020-01-01"), code: ExitUsage,
			want: "must be after --since"},
		{name: "page too large", args: append(ok, "--per-page", "500"), code: ExitUsage, want: "--per-page"},
		{name: "no keys configured", env: map[string]string{"CTM_API_KEYS": ""}, args: ok,
			code: ExitConfig, want: "CTM_API_KEYS: required"},
		{name: "no keys for the account", env: map[string]string{"CTM_API_KEYS": "1=a:b"}, args: ok,
			code: ExitConfig, want: "no keys for account 802"},
		{name: "keys refused", env: map[string]string{"CTM_API_KEYS": "802=wrong:keys"}, args: ok,
			code: ExitRejected, want: "CTM refused the API keys"},
		{name: "CTM unreachable", env: map[string]string{"CTM_API_KEYS": api.Keys(),
			"CTM_API_URL": "http://127.0.0.1:1"},
			args: ok, code: ExitUnavailable, want: "CTM API unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CTM_API_KEYS", api.Keys())
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, _, stderr := run(tc.args...)
			assert.Equal(t, tc.code, code, stderr)
			assert.Contains(t, stderr, tc.want)
		})
	}
}

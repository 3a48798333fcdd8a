package cli_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/cli"
	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/ctm/ctmtest"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, string(want), got, "output differs from %s (rerun with -update to accept)", path)
}

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Execute(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

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

	code, stdout, stderr := run(t, args...)
	require.Equal(t, cli.ExitOK, code, stderr)
	golden(t, "reconcile_first.golden", stdout)
	assert.Contains(t, stderr, "reconcile: page 1/2")
	assert.Contains(t, stderr, "reconcile: page 2/2")
	pending, err := st.ListDeliveries(t.Context(), store.DeliveryFilter{Status: models.DeliveryPending})
	require.NoError(t, err)
	assert.Len(t, pending, 3)

	code, stdout, stderr = run(t, args...)
	require.Equal(t, cli.ExitOK, code, stderr)
	golden(t, "reconcile_again.golden", stdout)
	pending, err = st.ListDeliveries(t.Context(), store.DeliveryFilter{Status: models.DeliveryPending})
	require.NoError(t, err)
	assert.Len(t, pending, 3, "a second run stores nothing twice")

	t.Run("--wait gives up when nothing applies the deliveries", func(t *testing.T) {
		code, _, stderr := run(t, append(args, "--wait", "1s")...)
		assert.Equal(t, cli.ExitUnavailable, code)
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
		{name: "no account", args: []string{"reconcile", "--since", "24h"}, code: cli.ExitUsage, want: "--account"},
		{name: "no since", args: []string{"reconcile", "--account", "802"}, code: cli.ExitUsage,
			want: "--since is required"},
		{name: "unreadable since", args: []string{"reconcile", "--account", "802", "--since", "last tuesday"},
			code: cli.ExitUsage, want: `"last tuesday" is not RFC 3339`},
		{name: "until before since", args: append(ok, "--until", "2020-01-01"), code: cli.ExitUsage,
			want: "must be after --since"},
		{name: "page too large", args: append(ok, "--per-page", "500"), code: cli.ExitUsage, want: "--per-page"},
		{name: "no keys configured", env: map[string]string{"CTM_API_KEYS": ""}, args: ok,
			code: cli.ExitConfig, want: "CTM_API_KEYS: required"},
		{name: "no keys for the account", env: map[string]string{"CTM_API_KEYS": "1=a:b"}, args: ok,
			code: cli.ExitConfig, want: "no keys for account 802"},
		{name: "keys refused", env: map[string]string{"CTM_API_KEYS": "802=wrong:keys"}, args: ok,
			code: cli.ExitRejected, want: "CTM refused the API keys"},
		{name: "CTM unreachable", env: map[string]string{"CTM_API_KEYS": api.Keys(),
			"CTM_API_URL": "http://127.0.0.1:1"},
			args: ok, code: cli.ExitUnavailable, want: "CTM API unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CTM_API_KEYS", api.Keys())
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, _, stderr := run(t, tc.args...)
			assert.Equal(t, tc.code, code, stderr)
			assert.Contains(t, stderr, tc.want)
		})
	}
}

package cli

import (
	"bytes"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/config"
)

var update = flag.Bool("update", false, "rewrite golden files")

// cleanEnv leaves only the given ctmflow variables set.
func cleanEnv(t *testing.T, set map[string]string) {
	t.Helper()
	for _, name := range config.Names() {
		t.Setenv(name, "") // restored when the test ends
		require.NoError(t, os.Unsetenv(name))
	}
	for k, v := range set {
		t.Setenv(k, v)
	}
}

func run(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = Execute(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestConfigCommand(t *testing.T) {
	t.Run("prints every variable, secrets masked", func(t *testing.T) {
		cleanEnv(t, map[string]string{
			"DATABASE_URL":        "postgres://ctmflow:db-password-1@db:5432/ctmflow",
			"CTM_WEBHOOK_SECRETS": "12=first-secret,7=second-secret",
			"API_TOKEN":           "api-token-0123456789",
			"CALL_END_TIMEOUT":    "2h",
			"CTM_API_KEYS":        "12=access-key-1:secret-key-1",
		})
		code, out, errOut := run("config", "--role", "webhook")
		require.Equal(t, ExitOK, code, errOut)
		for _, secret := range []string{"db-password-1", "first-secret", "second-secret", "api-token-0123456789",
			"access-key-1", "secret-key-1"} {
			assert.NotContains(t, out, secret)
		}
		golden(t, "config.golden", out)
	})

	cases := map[string]struct {
		args []string
		set  map[string]string
		want string
	}{
		"a malformed duration": {[]string{"config"}, map[string]string{"CALL_END_TIMEOUT": "soon"}, "CALL_END_TIMEOUT"},
		"a malformed number": {[]string{"config"}, map[string]string{"DATABASE_MAX_CONNS": "lots"},
			"DATABASE_MAX_CONNS"},
		"a role's requirement": {[]string{"config", "--role", "webhook"}, nil, "CTM_WEBHOOK_SECRETS"},
		"the worker starting":  {[]string{"worker"}, map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		"the webhook starting": {[]string{"webhook"}, map[string]string{"DATABASE_URL": "sqlite:x.db"}, "API_TOKEN"},
	}
	for name, tc := range cases {
		t.Run(name+" exits 3 naming the variable", func(t *testing.T) {
			cleanEnv(t, tc.set)
			code, _, errOut := run(tc.args...)
			assert.Equal(t, ExitConfig, code)
			assert.Contains(t, errOut, tc.want)
		})
	}

	t.Run("an unknown role is a usage error", func(t *testing.T) {
		cleanEnv(t, nil)
		code, _, _ := run("config", "--role", "janitor")
		assert.Equal(t, ExitUsage, code)
	})
}

func TestProbeCommand(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	cases := map[string]struct {
		url  string
		want int
	}{
		"2xx":          {srv.URL + "/healthz", ExitOK},
		"503":          {srv.URL + "/readyz", ExitUnavailable},
		"unreachable":  {deadURL + "/healthz", ExitUnavailable},
		"not a url":    {"healthz", ExitUsage},
		"other scheme": {"ftp://127.0.0.1/healthz", ExitUsage},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, _, errOut := run("probe", tc.url)
			assert.Equal(t, tc.want, code, errOut)
		})
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to create it")
	assert.Equal(t, string(want), got)
}

package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/ctmflow/ctmflow/app"
	"github.com/ctmflow/ctmflow/config"
	"github.com/ctmflow/ctmflow/engine"
	"github.com/ctmflow/ctmflow/inbox"
	"github.com/ctmflow/ctmflow/metrics"
	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/teststack"
)

// deadAddress is a local address nothing listens on.
func deadAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func dial(t *testing.T, hostPort string) client.Client {
	t.Helper()
	// Lazy: a client for an unreachable Temporal is what a process
	// started during an outage holds.
	c, err := engine.Dial(context.Background(), engine.Options{HostPort: hostPort, Lazy: true})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func deps(t *testing.T, dbURL, temporal string) app.Deps {
	t.Helper()
	cfg, err := config.Load(config.RoleDev, map[string]string{"DATABASE_URL": dbURL})
	require.NoError(t, err)
	return app.Deps{
		Config:   cfg,
		Log:      slog.New(slog.DiscardHandler),
		Store:    testenv.Store(t, dbURL),
		Temporal: dial(t, temporal),
		Metrics:  metrics.New(),
	}
}

type answer struct {
	Status int
	Body   map[string]any
}

func get(t *testing.T, h http.Handler, path string) answer {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	var body map[string]any
	b, _ := io.ReadAll(rec.Body)
	_ = json.Unmarshal(b, &body)
	return answer{Status: rec.Code, Body: body}
}

func errorMessage(a answer) string {
	e, _ := a.Body["error"].(map[string]any)
	msg, _ := e["message"].(string)
	return msg
}

// handlers are the two HTTP surfaces that answer health checks: the
// webhook process's and the worker's.
func handlers(d app.Deps) map[string]http.Handler {
	relay := inbox.New(d.Store, nil, inbox.Options{})
	return map[string]http.Handler{
		"webhook": app.NewHandler(d, relay),
		"worker":  app.NewOpsHandler(d),
	}
}

func TestHealthAndReadiness(t *testing.T) {
	temporal := teststack.Temporal(t).HostPort()

	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			t.Run("ready when the database and temporal answer", func(t *testing.T) {
				for name, h := range handlers(deps(t, db.URL, temporal)) {
					assert.Equal(t, http.StatusOK, get(t, h, "/healthz").Status, name)
					got := get(t, h, "/readyz")
					assert.Equal(t, http.StatusOK, got.Status, "%s: %v", name, got.Body)
					assert.Equal(t, "ready", got.Body["status"], name)
				}
			})

			t.Run("not ready with the database closed, still alive", func(t *testing.T) {
				d := deps(t, db.URL, temporal)
				hs := handlers(d)
				require.NoError(t, d.Store.Close())
				for name, h := range hs {
					assert.Equal(t, http.StatusOK, get(t, h, "/healthz").Status, name)
					got := get(t, h, "/readyz")
					assert.Equal(t, http.StatusServiceUnavailable, got.Status, name)
					assert.Contains(t, errorMessage(got), "database unreachable", name)
				}
			})
		})
	}

	t.Run("not ready with temporal unreachable, still alive", func(t *testing.T) {
		d := deps(t, testenv.SQLiteURL(t), deadAddress(t))
		for name, h := range handlers(d) {
			assert.Equal(t, http.StatusOK, get(t, h, "/healthz").Status, name)
			got := get(t, h, "/readyz")
			assert.Equal(t, http.StatusServiceUnavailable, got.Status, name)
			assert.Contains(t, errorMessage(got), "temporal unreachable", name)
		}
	})
}

func TestMetricsServedWithHealth(t *testing.T) {
	d := deps(t, testenv.SQLiteURL(t), deadAddress(t))
	d.Metrics.ObserveDelivery("call-start", "accepted", 0)
	for name, h := range handlers(d) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, app.MetricsPath, nil))
		assert.Equal(t, http.StatusOK, rec.Code, name)
		assert.Contains(t, rec.Body.String(), "ctmflow_webhook_deliveries_total", name)
	}
}

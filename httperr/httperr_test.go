package httperr

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serve runs one request through Middleware and a handler failing with
// err, returning the answer, the log and the counted status.
func serve(t *testing.T, ctx context.Context, err error) (*httptest.ResponseRecorder, map[string]any, int) {
	t.Helper()
	gin.SetMode(gin.TestMode)
	var logs bytes.Buffer
	counted := 0
	r := gin.New()
	r.Use(Middleware(slog.New(slog.NewJSONHandler(&logs, nil)), func(_ string, status int) { counted = status }))
	r.GET("/x", func(c *gin.Context) { Abort(c, err) })

	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/x", nil).WithContext(ctx))
	var line map[string]any
	require.NoError(t, json.Unmarshal(logs.Bytes(), &line), "one JSON log line: %s", logs.String())
	return w, line, counted
}

func TestOurFailureIsAnErrorWithItsCauseLoggedNotShown(t *testing.T) {
	err := Wrap(http.StatusInternalServerError, "storage_error", "listing leads", fmt.Errorf("dial tcp: refused"))
	w, line, counted := serve(t, context.Background(), err)

	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.JSONEq(t, `{"error":{"code":"storage_error","message":"listing leads"}}`, w.Body.String())
	assert.Equal(t, "ERROR", line["level"])
	assert.Equal(t, "dial tcp: refused", line["error"])
	assert.Equal(t, http.StatusInternalServerError, counted)
}

func TestClientThatHungUpIsNotOurFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Wrap(http.StatusInternalServerError, "storage_error", "listing leads",
		fmt.Errorf("listing leads: %w", context.Canceled))
	_, line, counted := serve(t, ctx, err)

	assert.Equal(t, "INFO", line["level"])
	assert.Equal(t, "client_closed_request", line["code"])
	assert.Equal(t, float64(StatusClientClosed), line["status"])
	assert.Equal(t, StatusClientClosed, counted)
}

func TestCanceledWorkWhileTheClientWaitsIsStillAnError(t *testing.T) {
	// A cancellation of our own (a shutdown, a deadline inside) while the
	// client is still there is a failure the client sees.
	err := Wrap(http.StatusInternalServerError, "storage_error", "listing leads", context.Canceled)
	w, line, _ := serve(t, context.Background(), err)

	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Equal(t, "ERROR", line["level"])
}

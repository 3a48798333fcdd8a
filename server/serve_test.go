package server

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/require"
)

// A connection a client opened ahead of need, with no request on it, must
// not hold up a graceful stop (http.Server waits five seconds for those).
func TestServeStopsDespiteUnusedConnections(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})
	go func() { done <- Serve(ctx, "127.0.0.1:0", h, time.Second, ready) }()

	conn, err := net.Dial("tcp", <-ready)
	require.NoError(t, err)
	defer conn.Close()
	// Give the server a moment to accept it into StateNew.
	time.Sleep(50 * time.Millisecond)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(4 * time.Second):
		t.Fatal("Serve did not return")
	}
}

// A request in flight when the stop begins is still answered.
func TestServeFinishesRequestsInFlight(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	inside := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(inside)
		time.Sleep(200 * time.Millisecond)
		w.WriteHeader(http.StatusAccepted)
	})
	go func() { done <- Serve(ctx, "127.0.0.1:0", h, 5*time.Second, ready) }()
	addr := <-ready

	status := make(chan int, 1)
	go func() {
		resp, err := http.Post("http://"+addr+"/", "application/json", nil)
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	<-inside
	cancel()
	require.Equal(t, http.StatusAccepted, <-status)
	require.NoError(t, <-done)
}

func TestTrailingSlashIsNotRedirected(t *testing.T) {
	r := NewRouter(Options{})
	r.POST("/webhooks/ctm/call-start", func(c *gin.Context) { c.Status(http.StatusAccepted) })
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/webhooks/ctm/call-start/", nil))
	require.Equal(t, http.StatusNotFound, rec.Code)
	require.Contains(t, rec.Body.String(), `"code":"not_found"`)
}

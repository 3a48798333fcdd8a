// Package server assembles ctmflow's HTTP surface — CTM webhooks, the /api
// routes, health — behind one gin engine with request ids, JSON errors for
// every failure including unknown paths, and a graceful shutdown.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ctmflow/ctmflow/httperr"
	"github.com/ctmflow/ctmflow/logging"
)

func init() {
	// gin's debug mode prints every route at start and warns on stdout.
	gin.SetMode(gin.ReleaseMode)
}

// Options assemble the router.
type Options struct {
	Logger *slog.Logger
	// Mount adds the product's routes (webhooks, /api).
	Mount func(r *gin.Engine)
	// Ready reports whether the process can serve: database and Temporal
	// reachable. Nil means always ready.
	Ready func(ctx context.Context) error
	// Middleware runs first on every request (metrics).
	Middleware []gin.HandlerFunc
	// CountError, when set, is told each error response's code and status.
	CountError func(code string, status int)
}

// NewRouter returns the HTTP handler.
func NewRouter(opts Options) *gin.Engine {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// A POST redirected to another path is not followed by most webhook
	// senders; a trailing slash gets a plain 404 instead.
	r.RedirectTrailingSlash = false
	r.ContextWithFallback = true
	r.Use(opts.Middleware...)
	r.Use(requestID, recovery(logger), httperr.Middleware(logger, opts.CountError))

	r.NoRoute(func(c *gin.Context) {
		httperr.Abort(c, httperr.New(http.StatusNotFound, "not_found", "no such path"))
	})
	r.NoMethod(func(c *gin.Context) {
		httperr.Abort(c, httperr.New(http.StatusMethodNotAllowed, "method_not_allowed",
			"method not allowed on this path"))
	})

	r.GET("/healthz", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"status": "ok"})
	})
	r.GET("/readyz", func(c *gin.Context) {
		if opts.Ready != nil {
			ctx, cancel := context.WithTimeout(c.Request.Context(), 3*time.Second)
			defer cancel()
			if err := opts.Ready(ctx); err != nil {
				httperr.Abort(c, httperr.Wrap(http.StatusServiceUnavailable, "not_ready", err.Error(), err))
				return
			}
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready"})
	})
	if opts.Mount != nil {
		opts.Mount(r)
	}
	return r
}

// unstarted tracks connections that have not begun a request.
type unstarted struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

func (u *unstarted) track(c net.Conn, st http.ConnState) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if st == http.StateNew {
		u.m[c] = struct{}{}
	} else {
		delete(u.m, c)
	}
}

func (u *unstarted) closeAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for c := range u.m {
		_ = c.Close()
	}
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// requestID tags each request with an id, taken from X-Request-ID when the
// caller sent a sane one, and echoes it back.
func requestID(c *gin.Context) {
	id := c.GetHeader("X-Request-ID")
	if !requestIDPattern.MatchString(id) {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		id = hex.EncodeToString(b)
	}
	c.Set(logging.KeyRequestID, id)
	c.Header("X-Request-ID", id)
	c.Next()
}

func recovery(logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				logger.Error("handler panicked", logging.KeyPath, c.FullPath(),
					logging.KeyRequestID, c.GetString(logging.KeyRequestID), "panic", fmt.Sprint(p))
				if !c.Writer.Written() {
					c.AbortWithStatusJSON(http.StatusInternalServerError, httperr.Body{
						Error: httperr.BodyError{Code: "internal", Message: "internal error"},
					})
				}
			}
		}()
		c.Next()
	}
}

// Serve listens on addr until ctx ends, then stops accepting and gives the
// requests in flight up to grace to finish. ready, when not nil, receives
// the bound address once listening.
func Serve(ctx context.Context, addr string, h http.Handler, grace time.Duration, ready chan<- string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	conns := &unstarted{m: map[net.Conn]struct{}{}}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		ConnState:         conns.track,
	}
	if ready != nil {
		ready <- l.Addr().String()
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving http: %w", err)
	case <-ctx.Done():
	}

	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(sctx) }()
	// Shutdown waits up to five seconds for connections that have not
	// sent a byte yet (clients and load balancers open them ahead of
	// need). Nothing was asked on them, so nothing is lost by closing them
	// now; a client retries elsewhere.
	conns.closeAll()
	if err := <-shut; err != nil {
		return fmt.Errorf("shutting down http: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

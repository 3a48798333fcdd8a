// Package teststack runs a whole ctmflow process inside a test: a real,
// in-process Temporal server, the database the test chose, the worker, the
// inbox relay and the HTTP server on a free port. Tests drive it the way
// CTM does, with signed HTTP requests.
//
// One Temporal server serves every stack of a test binary (it takes a
// couple of seconds to start); each stack has its own task queue, so
// stacks do not run each other's workflows.
package teststack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/ctmflow/ctmflow/app"
	"github.com/ctmflow/ctmflow/config"
	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/devserver"
	"github.com/ctmflow/ctmflow/engine"
	"github.com/ctmflow/ctmflow/logging"
	"github.com/ctmflow/ctmflow/metrics"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
)

var (
	serverOnce sync.Once
	server     *devserver.Server
	serverErr  error
)

// Temporal returns the test binary's in-process Temporal server, starting
// it on first use, with ctmflow's search attributes registered.
func Temporal(t testing.TB) *devserver.Server {
	t.Helper()
	serverOnce.Do(func() {
		server, serverErr = startTemporal(devserver.Options{})
	})
	if serverErr != nil {
		t.Fatalf("starting temporal: %v", serverErr)
	}
	return server
}

// StartTemporal starts a Temporal server of the test's own, for tests
// that need to look at its storage (opts.DBPath), with ctmflow's search
// attributes registered. It stops when the test ends.
func StartTemporal(t testing.TB, opts devserver.Options) *devserver.Server {
	t.Helper()
	srv, err := startTemporal(opts)
	if err != nil {
		t.Fatalf("starting temporal: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stopping temporal: %v", err)
		}
	})
	return srv
}

func startTemporal(opts devserver.Options) (*devserver.Server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := devserver.Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	c, err := engine.Dial(ctx, engine.Options{HostPort: srv.HostPort(), Namespace: srv.Namespace()})
	if err != nil {
		_ = srv.Stop()
		return nil, err
	}
	defer c.Close()
	if err := engine.EnsureSearchAttributes(ctx, c, srv.Namespace()); err != nil {
		_ = srv.Stop()
		return nil, err
	}
	return srv, nil
}

// Options shape a stack.
type Options struct {
	// DatabaseURL of the CRM database. Default: a fresh SQLite file.
	DatabaseURL string
	// EndTimeout is CALL_END_TIMEOUT. Default 1h.
	EndTimeout time.Duration
	// StepRetryTimeout is STEP_RETRY_TIMEOUT. Default 1h.
	StepRetryTimeout time.Duration
	// Temporal is the server to use. Default: the test binary's shared
	// in-memory server.
	Temporal *devserver.Server
	// NoWorker starts no worker, for tests that start their own.
	NoWorker bool
	// Logs receives the process's log lines (JSON). Default: discarded.
	Logs io.Writer
	// AccountID is the stack's CTM account. Default: a random one, which
	// keeps the workflow ids of stacks sharing a server apart.
	AccountID int64
	// Env adds to, or overrides, the process's environment: CTM_API_URL
	// and CTM_API_KEYS of a ctmtest stand-in, OUTBOUND_ALLOWLIST and
	// compressed TRIGGER_RETRY_* schedules, say.
	Env map[string]string
}

// Stack is a running ctmflow process.
type Stack struct {
	BaseURL   string
	Token     string
	AccountID int64
	Secret    string
	Config    *config.Config
	Deps      app.Deps
	Client    client.Client
	Store     *store.Store
	// Metrics is the stack's own registry, served at /metrics.
	Metrics *metrics.Metrics

	stop func()
}

// Start runs a stack until the test ends.
func Start(t testing.TB, opts Options) *Stack {
	t.Helper()
	srv := opts.Temporal
	if srv == nil {
		srv = Temporal(t)
	}
	if opts.DatabaseURL == "" {
		opts.DatabaseURL = testenv.SQLiteURL(t)
	}
	if opts.EndTimeout == 0 {
		opts.EndTimeout = time.Hour
	}
	if opts.StepRetryTimeout == 0 {
		opts.StepRetryTimeout = time.Hour
	}
	logs := opts.Logs
	if logs == nil {
		logs = io.Discard
	}

	if opts.AccountID == 0 {
		opts.AccountID = 1000 + time.Now().UnixNano()%1_000_000_000
	}
	s := &Stack{
		Token: "test_token_" + randomHex(8),
		// Stacks share one Temporal server; a private account keeps
		// their workflow ids apart.
		AccountID: opts.AccountID,
		Secret:    "test_secret_" + randomHex(8),
	}
	env := map[string]string{
		"DATABASE_URL":        opts.DatabaseURL,
		"TEMPORAL_ADDRESS":    srv.HostPort(),
		"TEMPORAL_NAMESPACE":  srv.Namespace(),
		"TEMPORAL_TASK_QUEUE": "ctmflow-test-" + randomHex(6),
		"CTM_WEBHOOK_SECRETS": strconv.FormatInt(s.AccountID, 10) + "=" + s.Secret,
		"API_TOKEN":           s.Token,
		"HTTP_ADDR":           "127.0.0.1:0",
		"CALL_END_TIMEOUT":    opts.EndTimeout.String(),
		"STEP_RETRY_TIMEOUT":  opts.StepRetryTimeout.String(),
		"SHUTDOWN_TIMEOUT":    "5s",
	}
	for k, v := range opts.Env {
		env[k] = v
	}
	cfg, err := config.Load(config.RoleWebhook, env)
	if err != nil {
		t.Fatalf("configuring stack: %v", err)
	}
	s.Config = cfg

	log, err := logging.New(logs, "json", "debug")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st := openStore(t, cfg)
	m := metrics.New()
	tc, err := app.DialTemporal(ctx, cfg, log, m, false)
	if err != nil {
		t.Fatalf("dialing temporal: %v", err)
	}
	s.Client, s.Store, s.Metrics = tc, st, m
	s.Deps = app.Deps{Config: cfg, Log: log, Store: st, Temporal: tc, Metrics: m}

	var stopWorker func()
	if !opts.NoWorker {
		w := app.NewWorker(s.Deps)
		if err := w.Start(); err != nil {
			t.Fatalf("starting worker: %v", err)
		}
		stopWorker = w.Stop
	}

	runCtx, cancel := context.WithCancel(ctx)
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- app.ServeWebhook(runCtx, s.Deps, cfg.HTTPAddr, ready) }()
	select {
	case addr := <-ready:
		s.BaseURL = "http://" + addr
	case err := <-done:
		t.Fatalf("serving: %v", err)
	}

	s.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stopping http server: %v", err)
		}
		if stopWorker != nil {
			stopWorker()
		}
		tc.Close()
	}
	t.Cleanup(s.Stop)
	return s
}

// openStore opens and migrates the stack's database the way the process
// does, with the configured lead rules.
func openStore(t testing.TB, cfg *config.Config) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := app.OpenStore(ctx, cfg)
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	return st
}

// Stop stops the stack; it is safe to call twice.
func (s *Stack) Stop() {
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// Sample returns a fictional call of the stack's account, started now.
// Its start is pinned, so that the same stage's body is the same bytes
// however much later it is built: a redelivery is recognised as one.
func (s *Stack) Sample(callID int64, phone string) ctm.Sample {
	return ctm.Sample{AccountID: s.AccountID, CallID: callID, Phone: phone, Start: time.Now()}
}

// Post sends body to /webhooks/ctm/<path>, signed as CTM signs it, and
// returns the status and decoded JSON answer.
func (s *Stack) Post(t testing.TB, path string, body []byte) (int, map[string]any) {
	t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, err := http.NewRequest(http.MethodPost, s.BaseURL+"/webhooks/ctm/"+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(ctm.HeaderTime, ts)
	req.Header.Set(ctm.HeaderSignature, ctm.Sign(s.Secret, ts, body))
	return s.do(t, req)
}

// Get calls the API with the stack's token and decodes the JSON answer
// into out, returning the status.
func (s *Stack) Get(t testing.TB, path string, out any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.BaseURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("decoding GET %s: %v", path, err)
		}
	}
	return resp.StatusCode
}

// Patch sends body as JSON to the API with the stack's token, and
// returns the status and decoded JSON answer.
func (s *Stack) Patch(t testing.TB, path string, body any) (int, map[string]any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPatch, s.BaseURL+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Content-Type", "application/json")
	return s.do(t, req)
}

// Call sends in as JSON (nil: no body) to the API with the stack's token
// and decodes the JSON answer into out (nil: dropped), returning the
// status.
func (s *Stack) Call(t testing.TB, method, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.BaseURL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("decoding %s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func (s *Stack) do(t testing.TB, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

// Eventually polls cond every 20 ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

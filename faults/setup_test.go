package faults

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/teststack"
)

// setup is what the processes of one fault test share: the database, the
// Temporal address, a private account and task queue, and the webhook's
// fixed address, kept across restarts.
type setup struct {
	t         testing.TB
	bin       string
	dbURL     string
	temporal  string
	account   int64
	secret    string
	token     string
	taskQueue string
	httpAddr  string
	base      string
	// store reads what the processes wrote; nil while the test's own
	// database is down.
	store *store.Store
}

var accounts atomic.Int64

func newSetup(t testing.TB, dbURL, temporal string) *setup {
	t.Helper()
	bin := teststack.Binary(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	s := &setup{
		t:         t,
		bin:       bin,
		dbURL:     dbURL,
		temporal:  temporal,
		account:   time.Now().UnixNano()%1_000_000_000 + accounts.Add(1),
		secret:    "faults_" + randomHex(12),
		token:     "faults_token_" + randomHex(12),
		taskQueue: "ctmflow-faults-" + randomHex(6),
		httpAddr:  addr,
		base:      "http://" + addr,
	}
	s.store = testenv.Store(t, dbURL) // migrates, as `ctmflow migrate` would
	return s
}

// webhook starts `ctmflow webhook` and waits until it answers.
func (s *setup) webhook(extra map[string]string) *proc {
	s.t.Helper()
	p := startProc(s.t, "webhook", ctmflowEnv(s, extra), s.bin, "webhook")
	waitHealthy(s.t, s.base, 60*time.Second)
	return p
}

// restartWebhook starts a stopped or killed webhook process again.
func (s *setup) restartWebhook(p *proc) {
	s.t.Helper()
	p.start()
	waitHealthy(s.t, s.base, 60*time.Second)
}

// worker starts `ctmflow worker` and waits until it polls.
func (s *setup) worker() *proc {
	s.t.Helper()
	p := startProc(s.t, "worker", ctmflowEnv(s, nil), s.bin, "worker")
	p.waitLog("worker polling", 60*time.Second)
	return p
}

// inboxPending asks the API how many deliveries wait for their workflow.
func (s *setup) inboxPending() (int64, error) {
	req, err := http.NewRequest(http.MethodGet, s.base+"/api/inbox", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /api/inbox: %s", resp.Status)
	}
	var out struct{ Pending int64 }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, err
	}
	return out.Pending, nil
}

func ctx(t testing.TB, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

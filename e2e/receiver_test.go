package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/api"
	"github.com/ctmflow/ctmflow/teststack"
	"github.com/ctmflow/ctmflow/triggers"
)

// receiver is a trigger destination: a real HTTP server on 127.0.0.1
// that checks each request's Standard Webhooks signature with code of
// its own, not ctmflow's, and answers what the test says.
type receiver struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	secrets []string
	answer  func(n int) int
	hits    []hit
}

// hit is one request the receiver got.
type hit struct {
	At        time.Time
	WebhookID string
	// Verified lists, per secret the receiver knows, whether it verifies
	// the signature.
	Verified []bool
	Payload  triggers.Payload
	Answered int
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return serveReceiver(t, l)
}

// newReceiverAt serves on addr, a port chosen earlier: a destination
// that was down and comes up.
func newReceiverAt(t *testing.T, addr string) *receiver {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err, "the reserved port was taken meanwhile")
	return serveReceiver(t, l)
}

func serveReceiver(t *testing.T, l net.Listener) *receiver {
	rc := &receiver{t: t, answer: func(int) int { return http.StatusNoContent }}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(rc.handle))
	rc.srv.Listener.Close()
	rc.srv.Listener = l
	rc.srv.Start()
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) URL() string { return rc.srv.URL }

// trust adds the secrets the receiver verifies with.
func (rc *receiver) trust(secrets ...string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.secrets = append(rc.secrets, secrets...)
}

func (rc *receiver) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h := hit{At: time.Now(), WebhookID: r.Header.Get("webhook-id")}
	_ = json.Unmarshal(body, &h.Payload)

	rc.mu.Lock()
	for _, s := range rc.secrets {
		h.Verified = append(h.Verified, verifySignature(s, r.Header, body))
	}
	h.Answered = rc.answer(len(rc.hits) + 1)
	rc.hits = append(rc.hits, h)
	rc.mu.Unlock()
	w.WriteHeader(h.Answered)
}

func (rc *receiver) got() []hit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hit(nil), rc.hits...)
}

// delivered returns the requests answered 2xx, by webhook id.
func (rc *receiver) delivered() map[string][]hit {
	out := map[string][]hit{}
	for _, h := range rc.got() {
		if h.Answered >= 200 && h.Answered < 300 {
			out[h.WebhookID] = append(out[h.WebhookID], h)
		}
	}
	return out
}

func (rc *receiver) waitHits(n int, what string) []hit {
	rc.t.Helper()
	teststack.Eventually(rc.t, 20*time.Second, what, func() bool { return len(rc.got()) >= n })
	return rc.got()
}

// verifySignature checks a Standard Webhooks request as a receiver
// would: HMAC-SHA256 of "id.timestamp.body" with the base64-decoded
// whsec_ secret, against any of the space-separated v1 signatures, and a
// timestamp within five minutes.
func verifySignature(secret string, h http.Header, body []byte) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	if d := time.Since(time.Unix(secs, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		v, ok := strings.CutPrefix(sig, "v1,")
		if !ok {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(v)
		if err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

// triggerEnv is a stack's configuration for trigger tests: destinations
// on 127.0.0.1 allowed, a day of retries compressed into seconds.
func triggerEnv(extra map[string]string) map[string]string {
	env := map[string]string{
		"OUTBOUND_ALLOWLIST":     "127.0.0.1/32",
		"TRIGGER_RETRY_INITIAL":  "50ms",
		"TRIGGER_RETRY_MAX":      "200ms",
		"TRIGGER_RETRY_FOR":      "60s",
		"TRIGGER_SWEEP_INTERVAL": "200ms",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// createRule posts a rule and returns it, with its secret when one was
// generated.
func createRule(t *testing.T, s *teststack.Stack, body map[string]any) api.Rule {
	t.Helper()
	var raw json.RawMessage
	status := s.Call(t, http.MethodPost, "/api/triggers", body, &raw)
	require.Equal(t, http.StatusCreated, status, "creating rule: %s", raw)
	var rule api.Rule
	require.NoError(t, json.Unmarshal(raw, &rule))
	return rule
}

func listDeliveries(t *testing.T, s *teststack.Stack, query string) []api.TriggerDelivery {
	t.Helper()
	var out api.TriggerDeliveryList
	require.Equal(t, http.StatusOK, s.Call(t, http.MethodGet, "/api/deliveries"+query, nil, &out))
	return out.Deliveries
}

package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/httperr"
	"github.com/ctmflow/ctmflow/inbox"
	"github.com/ctmflow/ctmflow/logging"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/server"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/webhook"
)

const (
	account = 7
	secret  = "secret-of-account-7"
	// Accounts 20 and 21 share one secret, as sub-accounts may.
	sharedSecret = "secret-of-20-and-21"
	maxBody      = 4096
	phone        = "+12395550171"
	phoneDigits  = "2395550171"
	callerName   = "Jordan Avery"
)

// harness is the webhook behind the real router, on a real inbox whose
// relay is not running: what is accepted stays in the store to be seen.
type harness struct {
	router http.Handler
	store  *store.Store

	mu       sync.Mutex
	logs     bytes.Buffer
	counted  []string
	observed []string
}

func (h *harness) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.logs.Write(p)
}

func newHarness(t *testing.T, in webhook.Inbox) *harness {
	t.Helper()
	h := &harness{store: testenv.Store(t, testenv.SQLiteURL(t))}
	if in == nil {
		in = inbox.New(h.store, nil, inbox.Options{})
	}
	log, err := logging.New(h, "json", "debug")
	require.NoError(t, err)
	wh := webhook.New(webhook.Options{
		Verifier: ctm.NewVerifier(map[int64]string{
			account: secret, 20: sharedSecret, 21: sharedSecret,
		}, 0),
		Inbox:        in,
		MaxBody:      maxBody,
		StoreTimeout: 200 * time.Millisecond,
		Logger:       log,
		Observe: func(kind, result string, _ time.Duration) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.observed = append(h.observed, kind+" "+result)
		},
	})
	h.router = server.NewRouter(server.Options{
		Logger: log,
		Mount:  func(r *gin.Engine) { wh.Register(r) },
		CountError: func(code string, status int) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.counted = append(h.counted, strconv.Itoa(status)+" "+code)
		},
	})
	return h
}

// request is one webhook request; zero fields take a valid default.
type request struct {
	method      string
	path        string
	body        []byte
	contentType string
	// sign sets the CTM headers; nil signs body with account 7's secret
	// at the current time.
	sign func(r *http.Request, body []byte)
	// chunked hides the length, so that only reading finds the size.
	chunked bool
}

func signWith(secret string, at time.Time) func(*http.Request, []byte) {
	return func(r *http.Request, body []byte) {
		ts := strconv.FormatInt(at.Unix(), 10)
		r.Header.Set(ctm.HeaderTime, ts)
		r.Header.Set(ctm.HeaderSignature, ctm.Sign(secret, ts, body))
	}
}

// countingReader counts what the handler reads of a body.
type countingReader struct {
	r    io.Reader
	read int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read += n
	return n, err
}

func (h *harness) do(t *testing.T, rq request) (*httptest.ResponseRecorder, *countingReader) {
	t.Helper()
	if rq.method == "" {
		rq.method = http.MethodPost
	}
	if rq.path == "" {
		rq.path = "/webhooks/ctm/call-start"
	}
	body := &countingReader{r: bytes.NewReader(rq.body)}
	req := httptest.NewRequest(rq.method, rq.path, body)
	req.ContentLength = int64(len(rq.body))
	if rq.chunked {
		req.ContentLength = -1
	}
	switch rq.contentType {
	case "":
		req.Header.Set("Content-Type", "application/json")
	case "none":
	default:
		req.Header.Set("Content-Type", rq.contentType)
	}
	if rq.sign == nil {
		rq.sign = signWith(secret, time.Now())
	}
	rq.sign(req, rq.body)

	rec := httptest.NewRecorder()
	h.router.ServeHTTP(rec, req)
	return rec, body
}

func (h *harness) deliveries(t *testing.T) int {
	t.Helper()
	ds, err := h.store.ListDeliveries(context.Background(), store.DeliveryFilter{Limit: 100})
	require.NoError(t, err)
	return len(ds)
}

func (h *harness) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logs.Reset()
	h.counted, h.observed = nil, nil
}

func sample() ctm.Sample {
	return ctm.Sample{AccountID: account, CallID: 42, Phone: phone, Name: callerName}
}

// Every class of bad input gets its status and a JSON error, is counted
// and logged below Error without caller details, and stores nothing.
func TestBadInput(t *testing.T) {
	start := sample().StartBody()
	large := testenv.WithFields(t, start, map[string]any{"transcription_text": strings.Repeat("a", maxBody)})
	now := time.Now()

	cases := []struct {
		name   string
		req    request
		status int
		code   string
		// webhook is false for requests the router refuses before any
		// webhook handler runs.
		notWebhook bool
	}{
		{"no signature headers", request{body: start, sign: func(*http.Request, []byte) {}},
			401, "signature_missing", false},
		{"only a timestamp", request{body: start, sign: func(r *http.Request, _ []byte) {
			r.Header.Set(ctm.HeaderTime, strconv.FormatInt(now.Unix(), 10))
		}}, 401, "signature_missing", false},
		{"signed with another secret", request{body: start, sign: signWith("not-the-secret", now)},
			401, "signature_invalid", false},
		{"signature over another body", request{body: start, sign: func(r *http.Request, _ []byte) {
			signWith(secret, now)(r, sample().EndBody())
		}}, 401, "signature_invalid", false},
		{"signature not base64", request{body: start, sign: func(r *http.Request, _ []byte) {
			r.Header.Set(ctm.HeaderTime, strconv.FormatInt(now.Unix(), 10))
			r.Header.Set(ctm.HeaderSignature, "%%%")
		}}, 401, "signature_invalid", false},
		{"timestamp six minutes old", request{body: start, sign: signWith(secret, now.Add(-6*time.Minute))},
			401, "timestamp_out_of_window", false},
		{"timestamp six minutes ahead", request{body: start, sign: signWith(secret, now.Add(6*time.Minute))},
			401, "timestamp_out_of_window", false},
		{"timestamp unreadable", request{body: start, sign: func(r *http.Request, body []byte) {
			r.Header.Set(ctm.HeaderTime, "yesterday")
			r.Header.Set(ctm.HeaderSignature, ctm.Sign(secret, "yesterday", body))
		}}, 401, "timestamp_invalid", false},
		{"account parameter names an unknown account",
			request{path: "/webhooks/ctm/call-start?account=99", body: start},
			401, "unknown_account", false},
		{"body claims an account its signer is not",
			request{body: testenv.WithFields(t, start, map[string]any{"account_id": 20})},
			401, "unknown_account", false},

		{"declared length over the limit", request{body: large}, 413, "body_too_large", false},
		{"chunked body over the limit", request{body: large, chunked: true}, 413, "body_too_large", false},

		{"not JSON", request{body: []byte("id=42&caller=x")}, 400, "invalid_json", false},
		{"JSON array", request{body: []byte(`[{"id": 42}]`)}, 400, "invalid_json", false},
		{"JSON string", request{body: []byte(`"call"`)}, 400, "invalid_json", false},
		{"object with trailing brace", request{body: append(start, '}')}, 400, "invalid_json", false},
		{"empty body", request{body: []byte{}}, 400, "empty_body", false},
		{"account parameter not a number",
			request{path: "/webhooks/ctm/call-start?account=seven", body: start},
			400, "invalid_account", false},

		{"no id", request{body: testenv.WithFields(t, start, map[string]any{"id": nil})}, 422, "missing_id", false},
		{"id zero", request{body: testenv.WithFields(t, start, map[string]any{"id": 0})}, 422, "missing_id", false},
		{"id not a number", request{body: testenv.WithFields(t, start, map[string]any{"id": "CA123"})},
			422, "missing_id", false},
		{"no account under a shared secret", request{
			body: testenv.WithFields(t, start, map[string]any{"account_id": nil}), sign: signWith(sharedSecret, now),
		}, 422, "missing_account", false},

		{"text/plain", request{body: start, contentType: "text/plain"}, 415, "unsupported_media_type", false},
		{"form", request{body: start, contentType: "application/x-www-form-urlencoded"},
			415, "unsupported_media_type", false},
		{"multipart", request{body: start, contentType: "multipart/form-data; boundary=x"},
			415, "unsupported_media_type", false},

		{"unknown webhook path", request{path: "/webhooks/ctm/call-ended", body: start}, 404, "not_found", true},
		{"unknown path", request{path: "/nope", body: start}, 404, "not_found", true},
		{"GET on a webhook", request{method: http.MethodGet, body: start}, 405, "method_not_allowed", true},
		{"PUT on a webhook", request{method: http.MethodPut, path: "/webhooks/ctm/call-end", body: start},
			405, "method_not_allowed", true},
	}

	h := newHarness(t, nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h.reset()
			rec, read := h.do(t, tc.req)

			assert.Equal(t, tc.status, rec.Code)
			assert.Contains(t, rec.Header().Get("Content-Type"), "application/json")
			var body httperr.Body
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
			assert.Equal(t, tc.code, body.Error.Code)
			assert.NotEmpty(t, body.Error.Message)
			assert.Zero(t, h.deliveries(t), "nothing stored")

			h.mu.Lock()
			defer h.mu.Unlock()
			assert.Equal(t, []string{strconv.Itoa(tc.status) + " " + tc.code}, h.counted, "counted once")
			if tc.notWebhook {
				assert.Empty(t, h.observed)
			} else {
				assert.Equal(t, []string{"call-start " + tc.code}, h.observed, "observed once")
			}
			assertCalmLogs(t, h.logs.String())
			if tc.status == http.StatusRequestEntityTooLarge {
				assert.LessOrEqual(t, read.read, maxBody+1, "read no further than the limit")
			}
		})
	}
}

// assertCalmLogs checks that a rejection is logged, below Error, and
// without the caller's number or name.
func assertCalmLogs(t *testing.T, logs string) {
	t.Helper()
	assert.Contains(t, logs, "request failed")
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var entry struct{ Level string }
		require.NoError(t, json.Unmarshal([]byte(line), &entry), line)
		assert.Contains(t, []string{"DEBUG", "INFO", "WARN"}, entry.Level, line)
	}
	assert.NotContains(t, logs, phoneDigits)
	assert.NotContains(t, logs, "Jordan")
}

func TestAcceptedAndRepeated(t *testing.T) {
	h := newHarness(t, nil)
	body := sample().StartBody()

	rec, _ := h.do(t, request{body: body})
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	var first webhook.Response
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &first))
	assert.Equal(t, "accepted", first.Status)

	// CTM signs a retry anew; the body is the same delivery.
	rec, _ = h.do(t, request{body: body, sign: signWith(secret, time.Now().Add(time.Minute))})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var again webhook.Response
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &again))
	assert.Equal(t, webhook.Response{DeliveryID: first.DeliveryID, Status: "duplicate"}, again)

	d, err := h.store.GetDelivery(context.Background(), first.DeliveryID)
	require.NoError(t, err)
	assert.Equal(t, body, d.Body, "the raw body, byte for byte")
	assert.Equal(t, int64(account), d.AccountID)
	assert.Equal(t, int64(42), d.CTMID)
	assert.Equal(t, models.KindCallStart, d.Kind)
	assert.NotEmpty(t, d.CTMTime)

	// A text posted to a call path is stored as what it is.
	rec, _ = h.do(t, request{body: sample().TextBody()})
	require.Equal(t, http.StatusAccepted, rec.Code)
	var text webhook.Response
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &text))
	d, err = h.store.GetDelivery(context.Background(), text.DeliveryID)
	require.NoError(t, err)
	assert.Equal(t, models.KindTextMessage, d.Kind)

	h.mu.Lock()
	defer h.mu.Unlock()
	assert.Equal(t, []string{"call-start accepted", "call-start duplicate", "call-start accepted"}, h.observed)
	assert.Empty(t, h.counted)
}

// stuckInbox is a database that hangs instead of refusing.
type stuckInbox struct{}

func (stuckInbox) Accept(ctx context.Context, _ *models.Delivery) (bool, error) {
	<-ctx.Done()
	return false, ctx.Err()
}

func TestStorageUnavailable(t *testing.T) {
	closed := newHarness(t, nil)
	require.NoError(t, closed.store.Close())
	stuck := newHarness(t, stuckInbox{})

	for name, h := range map[string]*harness{"database down": closed, "database hangs": stuck} {
		t.Run(name, func(t *testing.T) {
			rec, _ := h.do(t, request{body: sample().StartBody()})
			assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
			assert.Equal(t, "5", rec.Header().Get("Retry-After"), "CTM is told when to retry")
			var body httperr.Body
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			assert.Equal(t, "storage_unavailable", body.Error.Code)

			h.mu.Lock()
			defer h.mu.Unlock()
			assert.Equal(t, []string{"503 storage_unavailable"}, h.counted)
			assert.Equal(t, []string{"call-start storage_unavailable"}, h.observed)
			assert.NotContains(t, h.logs.String(), phoneDigits)
		})
	}
}

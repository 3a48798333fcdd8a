package triggers_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/egress"
	"github.com/ctmflow/ctmflow/metrics"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/triggers"
)

func TestScheduleDelay(t *testing.T) {
	s := triggers.Schedule{Initial: time.Second, Max: time.Minute, For: time.Hour}
	cases := []struct {
		attempt int32
		base    time.Duration
	}{
		{1, time.Second}, {2, 2 * time.Second}, {4, 8 * time.Second}, {7, time.Minute}, {40, time.Minute},
	}
	for _, tc := range cases {
		t.Run("attempt "+strconv.Itoa(int(tc.attempt)), func(t *testing.T) {
			lo, hi := s.Delay(tc.attempt, 0), s.Delay(tc.attempt, 0.999999)
			assert.Equal(t, tc.base*3/4, lo)
			assert.InDelta(t, float64(tc.base*5/4), float64(hi), float64(time.Millisecond))
			assert.Equal(t, tc.base, s.Delay(tc.attempt, 0.5))
		})
	}
}

// TestDefaultScheduleSpansADay adds up the waits of the production
// schedule: retries must keep going for at least a day.
func TestDefaultScheduleSpansADay(t *testing.T) {
	s := triggers.Schedule{Initial: 30 * time.Second, Max: time.Hour, For: 24 * time.Hour}
	var spent time.Duration
	attempts := int32(0)
	for spent < s.For {
		attempts++
		spent += s.Delay(attempts, 0) // the shortest waits jitter allows
	}
	assert.GreaterOrEqual(t, attempts, int32(25), "got %d attempts in a day", attempts)
}

// receiver is a destination under test: it verifies every request's
// signature with its own code, and answers what the test says.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	keys   [][]byte
	mu     sync.Mutex
	answer func(n int) (int, http.Header)
	got    []received
}

type received struct {
	header   http.Header
	body     []byte
	verified []bool
}

func newReceiver(t *testing.T, secrets ...string) *receiver {
	rc := &receiver{t: t, answer: func(int) (int, http.Header) { return http.StatusNoContent, nil }}
	for _, s := range secrets {
		k, err := triggers.DecodeSecret(s)
		require.NoError(t, err)
		rc.keys = append(rc.keys, k)
	}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec := received{header: r.Header.Clone(), body: body}
		for _, k := range rc.keys {
			rec.verified = append(rec.verified, verify(k, r.Header.Get("webhook-id"),
				r.Header.Get("webhook-timestamp"), body, r.Header.Get("webhook-signature")))
		}
		rc.mu.Lock()
		rc.got = append(rc.got, rec)
		code, h := rc.answer(len(rc.got))
		rc.mu.Unlock()
		for k, v := range h {
			w.Header()[k] = v
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

type sendFixture struct {
	st     *store.Store
	sender *triggers.Sender
	rule   *models.TriggerRule
	env    *testsuite.TestActivityEnvironment
}

// newSendFixture records a ringing call and a rule sending its
// lead.created event to url; it returns the delivery's id.
func newSendFixture(t *testing.T, url, secret string, allow bool) (*sendFixture, int64) {
	t.Helper()
	st := testenv.Store(t, testenv.SQLiteURL(t))
	ctx := context.Background()
	s := ctm.Sample{AccountID: 7, CallID: 77, Phone: "+12395550177", Start: t0}
	c, err := ctm.Parse(s.StartBody())
	require.NoError(t, err)
	rec, err := st.RecordCall(ctx, store.CallDelivery{
		Kind: models.KindCallStart, Version: store.Version(models.KindCallStart, t0), Call: c, Phone: s.Phone,
	})
	require.NoError(t, err)

	rule := &models.TriggerRule{Name: "dialer", Event: models.EventLeadCreated, URL: url, Secret: secret}
	require.NoError(t, st.CreateRule(ctx, rule))
	facts, ids, err := st.UnpublishedEventFacts(ctx, rec.EventIDs, leadCreated)
	require.NoError(t, err)
	require.Equal(t, models.EventLeadCreated, facts[0].Event.Type)
	start, err := st.FanOut(ctx, ids, []models.TriggerDelivery{
		store.NewTriggerDelivery(rule, &facts[0].Event, triggers.DedupeKey(&facts[0].Event)),
	})
	require.NoError(t, err)

	var prefixes []netip.Prefix
	if allow {
		prefixes = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}
	sender := &triggers.Sender{
		Store:           st,
		Client:          egress.NewClient(egress.NewGuard(prefixes), egress.Options{Timeout: 5 * time.Second}),
		MaxThrottleWait: 10 * time.Millisecond,
		Metrics:         metrics.New(),
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(sender)
	return &sendFixture{st: st, sender: sender, rule: rule, env: env}, start[0].ID
}

// leadCreated asks for the facts of lead.created events.
var leadCreated = map[string]bool{models.EventLeadCreated: true}

var testSchedule = triggers.Schedule{Initial: time.Second, Max: time.Minute, For: time.Hour}

func (f *sendFixture) send(id int64, run int) error {
	in := triggers.SendInput{DeliveryID: id, Run: run, Retry: testSchedule}
	_, err := f.env.ExecuteActivity(f.sender.SendTrigger, in)
	return err
}

// counted returns the trigger attempts counted with result.
func (f *sendFixture) counted(t *testing.T, result string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	f.sender.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, `ctmflow_trigger_deliveries_total{result="`+result+`",trigger="lead.created"}`) {
			return line[strings.LastIndex(line, " ")+1:]
		}
	}
	return "0"
}

func (f *sendFixture) delivery(t *testing.T, id int64) *models.TriggerDelivery {
	t.Helper()
	d, err := f.st.GetTriggerDelivery(context.Background(), id)
	require.NoError(t, err)
	return d
}

func TestSendTrigger(t *testing.T) {
	secret := triggers.NewSecret()

	t.Run("delivered, signed, with the lead", func(t *testing.T) {
		rc := newReceiver(t, secret)
		f, id := newSendFixture(t, rc.srv.URL+"/dial", secret, true)
		require.NoError(t, f.send(id, 0))

		got := rc.requests()
		require.Len(t, got, 1)
		r := got[0]
		assert.Equal(t, []bool{true}, r.verified, "the receiver verifies the signature")
		assert.Equal(t, "application/json", r.header.Get("Content-Type"))
		assert.Regexp(t, `^msg_`, r.header.Get("webhook-id"))
		ts, err := strconv.ParseInt(r.header.Get("webhook-timestamp"), 10, 64)
		require.NoError(t, err)
		assert.WithinDuration(t, time.Now(), time.Unix(ts, 0), time.Minute)

		var p triggers.Payload
		require.NoError(t, json.Unmarshal(r.body, &p))
		assert.Equal(t, models.EventLeadCreated, p.Type)
		require.NotNil(t, p.Data.Lead.Phone)
		assert.Equal(t, "+12395550177", *p.Data.Lead.Phone)
		require.NotNil(t, p.Data.Call)
		assert.Equal(t, models.StageStarted, p.Data.Call.Stage, "sent while the call rings")

		d := f.delivery(t, id)
		assert.Equal(t, models.TriggerDelivered, d.Status)
		assert.Equal(t, 1, d.Attempts)
		assert.Equal(t, http.StatusNoContent, d.LastStatusCode)
		assert.Equal(t, r.header.Get("webhook-id"), d.WebhookID)

		require.NoError(t, f.send(id, 0), "a delivered delivery is not sent again")
		assert.Len(t, rc.requests(), 1)
		assert.Equal(t, "1", f.counted(t, models.TriggerDelivered))
	})

	t.Run("503 honours Retry-After", func(t *testing.T) {
		rc := newReceiver(t, secret)
		rc.answer = func(int) (int, http.Header) {
			return http.StatusServiceUnavailable, http.Header{"Retry-After": {"7"}}
		}
		f, id := newSendFixture(t, rc.srv.URL, secret, true)
		err := f.send(id, 0)
		appErr := requireAppError(t, err)
		assert.False(t, appErr.NonRetryable())
		assert.Equal(t, 7*time.Second, appErr.NextRetryDelay())
		assert.Equal(t, triggers.ErrTypeFailed, appErr.Type())

		d := f.delivery(t, id)
		assert.Equal(t, models.TriggerRetrying, d.Status)
		assert.Equal(t, 503, d.LastStatusCode)
		assert.Contains(t, d.LastError, "retry after 7s")
	})

	t.Run("429 with an HTTP date", func(t *testing.T) {
		rc := newReceiver(t, secret)
		rc.answer = func(int) (int, http.Header) {
			at := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
			return http.StatusTooManyRequests, http.Header{"Retry-After": {at}}
		}
		f, id := newSendFixture(t, rc.srv.URL, secret, true)
		appErr := requireAppError(t, f.send(id, 0))
		assert.InDelta(t, float64(90*time.Second), float64(appErr.NextRetryDelay()), float64(2*time.Second))
	})

	t.Run("500 backs off on the schedule with jitter", func(t *testing.T) {
		rc := newReceiver(t, secret)
		rc.answer = func(int) (int, http.Header) { return http.StatusInternalServerError, nil }
		f, id := newSendFixture(t, rc.srv.URL, secret, true)
		appErr := requireAppError(t, f.send(id, 0))
		assert.False(t, appErr.NonRetryable())
		delay := appErr.NextRetryDelay()
		assert.GreaterOrEqual(t, delay, 750*time.Millisecond)
		assert.LessOrEqual(t, delay, 1250*time.Millisecond)
		assert.NotContains(t, appErr.Error(), "Jordan", "no payload in the error")
		assert.Equal(t, "1", f.counted(t, models.TriggerRetrying))

		// Retries ran out: the workflow gives up.
		fail := triggers.FailInput{DeliveryID: id, Reason: "gave up after retrying for 1h0m0s"}
		_, err := f.env.ExecuteActivity(f.sender.FailTrigger, fail)
		require.NoError(t, err)
		assert.Equal(t, "1", f.counted(t, models.TriggerFailed))
		d := f.delivery(t, id)
		assert.Equal(t, models.TriggerFailed, d.Status)
		assert.Equal(t, "gave up after retrying for 1h0m0s", d.LastError)
	})

	t.Run("410 disables the rule", func(t *testing.T) {
		rc := newReceiver(t, secret)
		rc.answer = func(int) (int, http.Header) { return http.StatusGone, nil }
		f, id := newSendFixture(t, rc.srv.URL, secret, true)
		appErr := requireAppError(t, f.send(id, 0))
		assert.True(t, appErr.NonRetryable())
		assert.Equal(t, triggers.ErrTypeGone, appErr.Type())

		rule, err := f.st.GetRule(context.Background(), f.rule.ID)
		require.NoError(t, err)
		assert.False(t, rule.Enabled())
		assert.Contains(t, rule.DisabledReason, "410")
		assert.Equal(t, models.TriggerFailed, f.delivery(t, id).Status)

		// The workflow records the failure too; it is counted once.
		fail := triggers.FailInput{DeliveryID: id, Reason: appErr.Message()}
		_, err = f.env.ExecuteActivity(f.sender.FailTrigger, fail)
		require.NoError(t, err)
		assert.Equal(t, "1", f.counted(t, models.TriggerFailed))
	})

	t.Run("a loopback destination is refused at dial", func(t *testing.T) {
		rc := newReceiver(t, secret)
		port := rc.srv.URL[strings.LastIndex(rc.srv.URL, ":"):]
		f, id := newSendFixture(t, "http://localhost"+port+"/", secret, false)
		appErr := requireAppError(t, f.send(id, 0))
		assert.True(t, appErr.NonRetryable())
		assert.Equal(t, triggers.ErrTypeRefused, appErr.Type())
		assert.Empty(t, rc.requests(), "nothing reached the loopback receiver")
		d := f.delivery(t, id)
		assert.Equal(t, models.TriggerFailed, d.Status)
		assert.Contains(t, d.LastError, "not allowed")
	})

	t.Run("a disabled rule skips", func(t *testing.T) {
		rc := newReceiver(t, secret)
		f, id := newSendFixture(t, rc.srv.URL, secret, true)
		require.NoError(t, f.st.DisableRule(context.Background(), f.rule.ID, "disabled by staff"))
		require.NoError(t, f.send(id, 0))
		assert.Empty(t, rc.requests())
		assert.Equal(t, models.TriggerSkipped, f.delivery(t, id).Status)
	})

	t.Run("a stale run sends nothing", func(t *testing.T) {
		rc := newReceiver(t, secret)
		f, id := newSendFixture(t, rc.srv.URL, secret, true)
		require.NoError(t, f.send(id, 3))
		assert.Empty(t, rc.requests())
	})

	t.Run("rate limit sends the attempt back to Temporal", func(t *testing.T) {
		rc := newReceiver(t, secret)
		f, id := newSendFixture(t, rc.srv.URL, secret, true)
		_, err := f.st.UpdateRule(context.Background(), f.rule.ID, func(r *models.TriggerRule) error {
			r.RateLimit = 1
			return nil
		})
		require.NoError(t, err)
		// Another rule's request to the same destination took this second.
		dest := triggers.Destination(rc.srv.URL)
		_, booked, err := f.st.ReserveSlot(context.Background(), dest, time.Second, time.Second)
		require.NoError(t, err)
		require.True(t, booked)

		appErr := requireAppError(t, f.send(id, 0))
		assert.Equal(t, triggers.ErrTypeThrottled, appErr.Type())
		assert.Greater(t, appErr.NextRetryDelay(), 500*time.Millisecond)
		assert.LessOrEqual(t, appErr.NextRetryDelay(), time.Second)
		assert.Empty(t, rc.requests())
		assert.Equal(t, 0, f.delivery(t, id).Attempts, "waiting for a slot is not an attempt")
	})

	t.Run("both secrets sign during a rotation", func(t *testing.T) {
		newSecret := triggers.NewSecret()
		rc := newReceiver(t, secret, newSecret)
		f, id := newSendFixture(t, rc.srv.URL, secret, true)
		until := time.Now().Add(time.Hour)
		_, err := f.st.UpdateRule(context.Background(), f.rule.ID, func(r *models.TriggerRule) error {
			r.PreviousSecret, r.PreviousSecretUntil, r.Secret = r.Secret, &until, newSecret
			return nil
		})
		require.NoError(t, err)
		require.NoError(t, f.send(id, 0))
		got := rc.requests()
		require.Len(t, got, 1)
		assert.Equal(t, []bool{true, true}, got[0].verified, "old and new secret both verify")
		assert.Len(t, strings.Fields(got[0].header.Get("webhook-signature")), 2)
	})
}

func requireAppError(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "got %T %v, want an application error", err, err)
	return appErr
}

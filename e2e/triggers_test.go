package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ctmflow/ctmflow/api"
	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/teststack"
	"github.com/ctmflow/ctmflow/workflows"
)

// TestTriggerBehaviours drives the three automations CRM users named,
// end to end: live transfer on lead.created while the call rings, a
// star-rating transfer that fires once per call, and a text-message
// trigger. Each request is checked by a receiver that verifies the
// signature itself.
func TestTriggerBehaviours(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := teststack.Start(t, teststack.Options{DatabaseURL: db.URL, Env: triggerEnv(nil)})
			t.Run("live transfer", func(t *testing.T) { liveTransfer(t, s) })
			t.Run("star rating transfer", func(t *testing.T) { starRatingTransfer(t, s) })
			t.Run("text message", func(t *testing.T) { textMessage(t, s) })
		})
	}
}

func liveTransfer(t *testing.T, s *teststack.Stack) {
	rc := newReceiver(t)
	rule := createRule(t, s, map[string]any{
		"name":        "Live transfer dialer",
		"event":       models.EventLeadCreated,
		"conditions":  map[string]any{"direction": "inbound", "sources": []string{"google ads"}},
		"destination": map[string]any{"url": rc.URL() + "/dial"},
	})
	require.True(t, strings.HasPrefix(rule.Destination.Secret, "whsec_"), "a secret is generated and shown")
	rc.trust(rule.Destination.Secret)

	phone := "+12395550190"
	status, _ := s.Post(t, "call-start", s.Sample(8001, phone).StartBody())
	require.Equal(t, http.StatusAccepted, status)

	hits := rc.waitHits(1, "the dialer's request")
	h := hits[0]
	assert.Equal(t, []bool{true}, h.Verified, "the receiver verifies the signature with the secret it was given")
	assert.Equal(t, models.EventLeadCreated, h.Payload.Type)
	require.NotNil(t, h.Payload.Data.Lead.Phone)
	assert.Equal(t, phone, *h.Payload.Data.Lead.Phone)
	assert.Equal(t, "Jordan Avery", h.Payload.Data.Lead.Name)
	require.NotNil(t, h.Payload.Data.Call)
	assert.Equal(t, models.StageStarted, h.Payload.Data.Call.Stage, "sent while the call still rings")
	assert.Equal(t, int64(8001), h.Payload.Data.Call.CTMCallID)

	var ds []api.TriggerDelivery
	teststack.Eventually(t, 10*time.Second, "the delivery logged as delivered", func() bool {
		ds = listDeliveries(t, s, fmt.Sprintf("?rule_id=%d", rule.ID))
		return len(ds) == 1 && ds[0].Status == models.TriggerDelivered
	})
	assert.Equal(t, 1, ds[0].Attempts)
	assert.Equal(t, http.StatusNoContent, ds[0].LastStatusCode)
	assert.Equal(t, h.WebhookID, ds[0].WebhookID)
	assert.Equal(t, h.Payload.Data.LeadID, ds[0].LeadID)
	assert.Len(t, listDeliveries(t, s, fmt.Sprintf("?lead_id=%d", ds[0].LeadID)), 1)

	// The same caller again: no new lead, so no second transfer.
	status, body := s.Post(t, "call-start", s.Sample(8002, phone).StartBody())
	require.Equal(t, http.StatusAccepted, status)
	waitProcessed(t, s, body)
	assert.Len(t, listDeliveries(t, s, fmt.Sprintf("?rule_id=%d", rule.ID)), 1)

	wfID := workflows.TriggerWorkflowID(ds[0].WebhookID, 0)
	waitClosed(t, s, wfID)
	assertNoPHIInTriggerHistory(t, s, wfID, phone)
	replayHistory(t, s, wfID, "trigger_delivered")
	disable(t, s, rule.ID)
}

func starRatingTransfer(t *testing.T, s *teststack.Stack) {
	rc := newReceiver(t)
	rule := createRule(t, s, map[string]any{
		"name":        "Partner buys 4 stars and up",
		"event":       models.EventCallScored,
		"conditions":  map[string]any{"min_star_rating": 4},
		"destination": map[string]any{"url": rc.URL()},
	})
	rc.trust(rule.Destination.Secret)

	phone := "+12395550191"
	sample := s.Sample(8101, phone)
	status, _ := s.Post(t, "call-start", sample.StartBody())
	require.Equal(t, http.StatusAccepted, status)
	_, body := s.Post(t, "call-end", sample.EndBody())
	waitProcessed(t, s, body)

	// Scored 3: below the threshold, nothing goes out.
	rateCall(t, s, sample, 3)
	assert.Empty(t, listDeliveries(t, s, fmt.Sprintf("?rule_id=%d", rule.ID)))

	// Scored 5: the partner gets the lead, once.
	rateCall(t, s, sample, 5)
	hits := rc.waitHits(1, "the partner's request")
	assert.Equal(t, []bool{true}, hits[0].Verified)
	assert.Equal(t, float64(5), hits[0].Payload.Data.Details["star_rating"])
	require.NotNil(t, hits[0].Payload.Data.Call)
	assert.Equal(t, "ended", hits[0].Payload.Data.Call.Stage)

	// Re-scored 4, then 5 again: still one transfer for this call.
	rateCall(t, s, sample, 4)
	rateCall(t, s, sample, 5)
	ds := listDeliveries(t, s, fmt.Sprintf("?rule_id=%d", rule.ID))
	require.Len(t, ds, 1, "one delivery per call however often it is scored")
	teststack.Eventually(t, 10*time.Second, "the delivery settled", func() bool {
		d := listDeliveries(t, s, fmt.Sprintf("?rule_id=%d", rule.ID))
		return d[0].Status == models.TriggerDelivered
	})
	assert.Len(t, rc.got(), 1)

	// Another call of the same caller, scored 4: a delivery of its own.
	second := s.Sample(8102, phone)
	_, body = s.Post(t, "call-end", second.EndBody())
	waitProcessed(t, s, body)
	rateCall(t, s, second, 4)
	rc.waitHits(2, "the second call's transfer")
	assert.Len(t, rc.delivered(), 2)
	disable(t, s, rule.ID)
}

// rateCall posts a score update and waits until its events are
// published: from then on, whether a rule fired is settled.
func rateCall(t *testing.T, s *teststack.Stack, sample ctm.Sample, rating int) {
	t.Helper()
	sample.Rating = rating
	status, body := s.Post(t, "call-update", sample.UpdateBody())
	require.Less(t, status, 300)
	waitProcessed(t, s, body)
	waitPublished(t, s)
}

// waitPublished waits until every lead event of the stack is published.
func waitPublished(t *testing.T, s *teststack.Stack) {
	t.Helper()
	teststack.Eventually(t, 10*time.Second, "lead events published", func() bool {
		ids, err := s.Store.UnpublishedEvents(context.Background(), time.Now().Add(time.Hour), 1)
		return err == nil && len(ids) == 0
	})
}

func textMessage(t *testing.T, s *teststack.Stack) {
	rc := newReceiver(t)
	rule := createRule(t, s, map[string]any{
		"name":        "Text follow-up",
		"event":       models.EventMessageReceived,
		"conditions":  map[string]any{"direction": ctm.DirectionMsgInbound},
		"destination": map[string]any{"url": rc.URL(), "rate_limit_per_second": 1},
	})
	rc.trust(rule.Destination.Secret)

	phone := "+12395550192"
	status, _ := s.Post(t, "call-start", s.Sample(8201, phone).StartBody())
	require.Equal(t, http.StatusAccepted, status)
	status, _ = s.Post(t, "text-message", s.Sample(8202, "(239) 555-0192").TextBody())
	require.Equal(t, http.StatusAccepted, status)

	h := rc.waitHits(1, "the text trigger")[0]
	assert.Equal(t, []bool{true}, h.Verified)
	assert.Equal(t, models.EventMessageReceived, h.Payload.Type)
	require.NotNil(t, h.Payload.Data.Message)
	assert.Equal(t, "Hi, is there a bed available this week?", h.Payload.Data.Message.Body)
	require.NotNil(t, h.Payload.Data.Lead.Phone)
	assert.Equal(t, phone, *h.Payload.Data.Lead.Phone, "the text is the caller's lead's")
	assert.Nil(t, h.Payload.Data.Call)

	// Three more texts from the same person: the destination's limit of
	// one a second spaces them out.
	for i := range 3 {
		status, _ := s.Post(t, "text-message", s.Sample(int64(8203+i), phone).TextBody())
		require.Equal(t, http.StatusAccepted, status)
	}
	hits := rc.waitHits(4, "all four texts")
	for i := 2; i < len(hits); i++ { // hits[1] came after a pause
		gap := hits[i].At.Sub(hits[i-1].At)
		assert.GreaterOrEqual(t, gap, 900*time.Millisecond, "got texts %s apart, want about a second", gap)
	}
	disable(t, s, rule.ID)
}

func disable(t *testing.T, s *teststack.Stack, ruleID int64) {
	t.Helper()
	require.Equal(t, http.StatusOK, s.Call(t, http.MethodPatch, fmt.Sprintf("/api/triggers/%d", ruleID),
		map[string]any{"enabled": false}, nil))
}

// TestDestinationDownThenUp: the destination refuses connections while
// three leads come in, then comes up. Every event reaches it exactly once.
func TestDestinationDownThenUp(t *testing.T) {
	s := teststack.Start(t, teststack.Options{Env: triggerEnv(nil)})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	rule := createRule(t, s, map[string]any{
		"name": "Dialer", "event": models.EventLeadCreated,
		"destination": map[string]any{"url": "http://" + addr + "/dial"},
	})
	for i := range 3 {
		status, _ := s.Post(t, "call-start", s.Sample(int64(8300+i), fmt.Sprintf("+1239555030%d", i)).StartBody())
		require.Equal(t, http.StatusAccepted, status)
	}
	teststack.Eventually(t, 20*time.Second, "every delivery failing and retried", func() bool {
		ds := listDeliveries(t, s, "")
		if len(ds) != 3 {
			return false
		}
		for _, d := range ds {
			if d.Status != models.TriggerRetrying || d.Attempts < 2 {
				return false
			}
		}
		return true
	})
	for _, d := range listDeliveries(t, s, "") {
		assert.Contains(t, d.LastError, "connection refused")
		assert.Zero(t, d.LastStatusCode)
	}

	rc := newReceiverAt(t, addr)
	rc.trust(rule.Destination.Secret)
	teststack.Eventually(t, 20*time.Second, "every delivery delivered", func() bool {
		for _, d := range listDeliveries(t, s, "") {
			if d.Status != models.TriggerDelivered {
				return false
			}
		}
		return true
	})
	got := rc.delivered()
	assert.Len(t, got, 3, "three events, three webhook ids")
	for id, hits := range got {
		assert.Len(t, hits, 1, "webhook %s delivered once", id)
		assert.Equal(t, []bool{true}, hits[0].Verified)
	}
	assert.Len(t, rc.got(), 3, "nothing sent again after a 2xx")
}

// TestDestinationFailing covers the answers that end a delivery: retries
// running out (a day compressed into three seconds), and 410 Gone, which
// disables the rule.
func TestDestinationFailing(t *testing.T) {
	// The embedded server fires retry timers about a second apart at the
	// soonest, so three seconds make a few attempts.
	s := teststack.Start(t, teststack.Options{Env: triggerEnv(map[string]string{"TRIGGER_RETRY_FOR": "3s"})})

	t.Run("retries run out", func(t *testing.T) {
		rc := newReceiver(t)
		rc.answer = func(int) int { return http.StatusInternalServerError }
		rule := createRule(t, s, map[string]any{
			"name": "Flaky partner", "event": models.EventCallStarted,
			"destination": map[string]any{"url": rc.URL()},
		})
		status, _ := s.Post(t, "call-start", s.Sample(8401, "+12395550193").StartBody())
		require.Equal(t, http.StatusAccepted, status)

		var d api.TriggerDelivery
		teststack.Eventually(t, 20*time.Second, "the delivery given up", func() bool {
			ds := listDeliveries(t, s, fmt.Sprintf("?rule_id=%d", rule.ID))
			if len(ds) == 1 {
				d = ds[0]
			}
			return d.Status == models.TriggerFailed
		})
		assert.GreaterOrEqual(t, d.Attempts, 2, "%+v", d)
		assert.Equal(t, http.StatusInternalServerError, d.LastStatusCode)
		assert.Contains(t, d.LastError, "gave up after retrying for 3s")
		assert.Equal(t, d.Attempts, len(rc.got()), "each attempt logged")
		assert.Len(t, listDeliveries(t, s, "?status=failed"), 1)

		wfID := workflows.TriggerWorkflowID(d.WebhookID, 0)
		teststack.Eventually(t, 10*time.Second, "the workflow failed, as the UI shows it", func() bool {
			desc, err := s.Client.DescribeWorkflowExecution(context.Background(), wfID, "")
			return err == nil && desc.WorkflowExecutionInfo.Status == enumspb.WORKFLOW_EXECUTION_STATUS_FAILED
		})
		assertNoPHIInTriggerHistory(t, s, wfID, "+12395550193")
		replayHistory(t, s, wfID, "trigger_retries_ran_out")
		disable(t, s, rule.ID)
	})

	t.Run("410 disables the rule", func(t *testing.T) {
		rc := newReceiver(t)
		rc.answer = func(int) int { return http.StatusGone }
		rule := createRule(t, s, map[string]any{
			"name": "Retired endpoint", "event": models.EventLeadCreated,
			"destination": map[string]any{"url": rc.URL()},
		})
		status, _ := s.Post(t, "call-start", s.Sample(8402, "+12395550194").StartBody())
		require.Equal(t, http.StatusAccepted, status)

		var got api.Rule
		teststack.Eventually(t, 20*time.Second, "the rule disabled", func() bool {
			s.Call(t, http.MethodGet, fmt.Sprintf("/api/triggers/%d", rule.ID), nil, &got)
			return !got.Enabled
		})
		assert.Contains(t, got.DisabledReason, "410")
		assert.Len(t, rc.got(), 1, "410 is not retried")

		status, body := s.Post(t, "call-start", s.Sample(8403, "+12395550195").StartBody())
		require.Equal(t, http.StatusAccepted, status)
		waitProcessed(t, s, body)
		waitPublished(t, s)
		assert.Len(t, listDeliveries(t, s, fmt.Sprintf("?rule_id=%d", rule.ID)), 1, "a disabled rule fires no more")
	})
}

// TestOutboundGuard runs a stack with no allowlist: loopback destinations
// are refused when the rule is saved, and, behind a hostname, when dialled.
func TestOutboundGuard(t *testing.T) {
	env := triggerEnv(nil)
	delete(env, "OUTBOUND_ALLOWLIST")
	s := teststack.Start(t, teststack.Options{Env: env})
	rc := newReceiver(t)
	port := rc.URL()[strings.LastIndex(rc.URL(), ":")+1:]

	for _, url := range []string{
		rc.URL(),
		"http://[::ffff:127.0.0.1]:" + port,
		"http://169.254.169.254/latest/meta-data/",
	} {
		var failure map[string]map[string]any
		status := s.Call(t, http.MethodPost, "/api/triggers", map[string]any{
			"name": "sneaky", "event": models.EventLeadCreated, "destination": map[string]any{"url": url},
		}, &failure)
		assert.Equal(t, http.StatusUnprocessableEntity, status, url)
		fields, _ := failure["error"]["fields"].(map[string]any)
		assert.Contains(t, fields["destination.url"], "OUTBOUND_ALLOWLIST", url)
	}

	rule := createRule(t, s, map[string]any{
		"name": "resolves inward", "event": models.EventLeadCreated,
		"destination": map[string]any{"url": "http://localhost:" + port + "/"},
	})
	status, _ := s.Post(t, "call-start", s.Sample(8501, "+12395550196").StartBody())
	require.Equal(t, http.StatusAccepted, status)
	var ds []api.TriggerDelivery
	teststack.Eventually(t, 20*time.Second, "the delivery refused", func() bool {
		ds = listDeliveries(t, s, fmt.Sprintf("?rule_id=%d", rule.ID))
		return len(ds) == 1 && ds[0].Status == models.TriggerFailed
	})
	assert.Contains(t, ds[0].LastError, "not allowed")
	assert.Equal(t, 1, ds[0].Attempts, "a refused address is not retried")
	assert.Empty(t, rc.got(), "nothing reached the loopback receiver")
}

// TestNoTriggerLost writes what a process that died at the worst moment
// leaves behind, and checks the sweeper finishes the job: an event
// committed but never published, and a delivery recorded but never
// started.
func TestNoTriggerLost(t *testing.T) {
	s := teststack.Start(t, teststack.Options{Env: triggerEnv(nil)})
	rc := newReceiver(t)
	rule := createRule(t, s, map[string]any{
		"name": "Dialer", "event": models.EventLeadCreated,
		"destination": map[string]any{"url": rc.URL()},
	})
	rc.trust(rule.Destination.Secret)
	ctx := context.Background()

	// Died after the commit: the lead.created event exists, unpublished.
	committed := s.Sample(8601, "+12395550197")
	recordDirectly(t, s, committed)

	// Died after the fan-out: the delivery exists, its workflow does not.
	fannedOut := s.Sample(8602, "+12395550198")
	rec := recordDirectly(t, s, fannedOut)
	facts, ids, err := s.Store.UnpublishedEventFacts(ctx, rec.EventIDs, leadCreated)
	require.NoError(t, err)
	stored, err := s.Store.GetRule(ctx, rule.ID)
	require.NoError(t, err)
	_, err = s.Store.FanOut(ctx, ids, []models.TriggerDelivery{
		store.NewTriggerDelivery(stored, &facts[0].Event, "event:fanned-out"),
	})
	require.NoError(t, err)

	rc.waitHits(2, "both requests, from the sweeper")
	for _, h := range rc.got() {
		assert.Equal(t, []bool{true}, h.Verified)
	}
	phones := map[string]bool{}
	for _, h := range rc.got() {
		phones[*h.Payload.Data.Lead.Phone] = true
	}
	assert.Equal(t, map[string]bool{"+12395550197": true, "+12395550198": true}, phones)
}

// leadCreated asks for the facts of lead.created events.
var leadCreated = map[string]bool{models.EventLeadCreated: true}

// recordDirectly records a call start in the database the way the
// workflow's first step does, without publishing its events.
func recordDirectly(t *testing.T, s *teststack.Stack, sample ctm.Sample) store.CallRecord {
	t.Helper()
	c, err := ctm.Parse(sample.StartBody())
	require.NoError(t, err)
	rec, err := s.Store.RecordCall(context.Background(), store.CallDelivery{
		Kind: "call-start", Version: store.Version("call-start", time.Now()), Call: c, Phone: sample.Phone,
	})
	require.NoError(t, err)
	return rec
}

// assertNoPHIInTriggerHistory scans a delivery workflow's history for the
// lead's number and name.
func assertNoPHIInTriggerHistory(t *testing.T, s *teststack.Stack, wfID, phone string) {
	t.Helper()
	iter := s.Client.GetWorkflowHistory(context.Background(), wfID, "", false,
		enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	events := 0
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		events++
		raw, err := proto.Marshal(ev)
		require.NoError(t, err)
		text := string(raw)
		assert.NotContains(t, text, strings.TrimPrefix(phone, "+1"), "history event %d", ev.EventId)
		assert.NotContains(t, text, "Jordan", "history event %d", ev.EventId)
		assert.NotContains(t, text, "Avery", "history event %d", ev.EventId)
	}
	assert.Greater(t, events, 3, "got %d events, want the whole run", events)
}

package e2e

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/api"
	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/teststack"
)

// runLifecycle drives one caller through everything CTM sends, plus the
// mistakes a sender makes, and waits until the CRM shows it all.
func runLifecycle(t *testing.T, s *teststack.Stack, callID int64, phone string) {
	t.Helper()
	sample := s.Sample(callID, phone)

	status, _ := s.Post(t, "call-start", sample.StartBody())
	require.Equal(t, http.StatusAccepted, status)
	status, _ = s.Post(t, "call-start", sample.StartBody())
	require.Equal(t, http.StatusOK, status, "a redelivery")
	status, _ = s.Post(t, "call-end", sample.EndBody())
	require.Equal(t, http.StatusAccepted, status)
	status, _ = s.Post(t, "call-update", sample.UpdateBody())
	require.Equal(t, http.StatusAccepted, status)
	status, _ = s.Post(t, "text-message", sample.TextBody())
	require.Equal(t, http.StatusAccepted, status)

	// A delivery signed with the wrong secret, and one that is no JSON:
	// both carry the caller's details and are refused.
	bad := *s
	bad.Secret = "not-the-secret"
	status, _ = bad.Post(t, "call-start", sample.StartBody())
	require.Equal(t, http.StatusUnauthorized, status)
	status, _ = s.Post(t, "call-end", []byte(`{"id": `+strconv.FormatInt(callID, 10)+`, "caller_number": "`+phone))
	require.Equal(t, http.StatusBadRequest, status)

	waitCall(t, s, phone, callID, "the call ended, transcript attached", func(c *api.Call) bool {
		return c.Stage == models.StageEnded && c.Transcript != "" && c.StarRating != nil
	})
	teststack.Eventually(t, 15*time.Second, "the text on the lead", func() bool {
		leads := leadsByPhone(t, s, phone)
		return len(leads) == 1 && contains(eventTypes(leads[0]), models.EventMessageReceived)
	})
	// A lookup by number, as staff do: the number is in the query.
	var out api.LeadList
	require.Equal(t, http.StatusOK, s.Get(t, "/api/leads?phone="+strings.ReplaceAll(phone, "+", "%2B"), &out))
	require.Equal(t, http.StatusNotFound, s.Get(t, "/api/leads/999999999", nil))
}

// A whole lifecycle through the real stack, at debug level, leaves no
// caller detail in the process's logs.
func TestLifecycleLogsNoPHI(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			var logs syncBuffer
			s := teststack.Start(t, teststack.Options{DatabaseURL: db.URL, Logs: &logs})
			phone := "+12395550163"
			runLifecycle(t, s, 7301, phone)
			s.Stop()

			out := logs.String()
			require.Contains(t, out, `"request_id"`, "the stack logged requests")
			digits := strings.NewReplacer(" ", "", "-", "", ".", "", "(", "", ")", "").Replace(out)
			assert.NotContains(t, digits, "2395550163", "the caller's number")
			sample := s.Sample(7301, phone)
			for what, text := range map[string]string{
				"name":          "Jordan Avery",
				"transcript":    ctm.SampleTranscript[:40],
				"summary":       "inpatient treatment for a sibling",
				"recording url": "/calls/7301/recording",
				"text message":  "bed available",
				"raw body":      string(sample.StartBody()[:30]),
			} {
				assert.NotContains(t, out, text, what)
			}
		})
	}
}

func scrape(t *testing.T, s *teststack.Stack) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(s.BaseURL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// sample finds the series of family name whose labels include want.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	for _, m := range fams[name].GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && got[k] == v
		}
		if match {
			return m
		}
	}
	return nil
}

// The metrics a lifecycle produces, read from /metrics as Prometheus
// reads them.
func TestLifecycleMetrics(t *testing.T) {
	s := teststack.Start(t, teststack.Options{})
	runLifecycle(t, s, 7401, "+12395550164")
	fams := scrape(t, s)

	counter := func(name string, labels map[string]string) float64 {
		m := sample(fams, name, labels)
		require.NotNil(t, m, "%s%v", name, labels)
		return m.GetCounter().GetValue()
	}
	histogramCount := func(name string, labels map[string]string) uint64 {
		m := sample(fams, name, labels)
		require.NotNil(t, m, "%s%v", name, labels)
		return m.GetHistogram().GetSampleCount()
	}

	type labels = map[string]string
	t.Run("deliveries by stage and result", func(t *testing.T) {
		const name = "ctmflow_webhook_deliveries_total"
		assert.Equal(t, 1.0, counter(name, labels{"kind": "call-start", "result": "accepted"}))
		assert.Equal(t, 1.0, counter(name, labels{"kind": "call-start", "result": "duplicate"}))
		assert.Equal(t, 1.0, counter(name, labels{"kind": "call-start", "result": "signature_invalid"}))
		assert.Equal(t, 1.0, counter(name, labels{"kind": "call-end", "result": "accepted"}))
		assert.Equal(t, 1.0, counter(name, labels{"kind": "text-message", "result": "accepted"}))
	})
	t.Run("ack latency", func(t *testing.T) {
		assert.Equal(t, uint64(3), histogramCount("ctmflow_webhook_ack_seconds", labels{"kind": "call-start"}))
	})
	t.Run("http errors by code", func(t *testing.T) {
		const name = "ctmflow_http_errors_total"
		assert.Equal(t, 1.0, counter(name, labels{"code": "signature_invalid", "status": "401"}))
		assert.Equal(t, 1.0, counter(name, labels{"code": "invalid_json", "status": "400"}))
		assert.Equal(t, 1.0, counter(name, labels{"status": "404"}))
	})
	t.Run("call start to lead", func(t *testing.T) {
		// The start, end and update were posted back to back, so any of
		// them may reach the workflow first and create the call; one did.
		var created uint64
		for _, m := range fams["ctmflow_call_lead_seconds"].GetMetric() {
			created += m.GetHistogram().GetSampleCount()
		}
		assert.Equal(t, uint64(1), created)
	})
	t.Run("inbox backlog", func(t *testing.T) {
		require.Contains(t, fams, "ctmflow_inbox_pending")
		require.Contains(t, fams, "ctmflow_inbox_oldest_pending_age_seconds")
		pending := fams["ctmflow_inbox_pending"].GetMetric()[0].GetGauge().GetValue()
		assert.Equal(t, 0.0, pending, "all dispatched")
	})
	t.Run("temporal sdk", func(t *testing.T) {
		assert.Positive(t, counter("temporal_request_total",
			labels{"operation": "SignalWithStartWorkflowExecution"}))
		// The end steps run as local activities unless they fail.
		assert.Positive(t, histogramCount("temporal_local_activity_execution_latency_seconds",
			labels{"activity_type": "AttachTranscript"}))
		assert.Positive(t, counter("temporal_workflow_completed_total",
			labels{"workflow_type": "MessageWorkflow"}))
	})
}

package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scrape fetches /metrics the way Prometheus does and parses it.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// find returns the metric of family name whose labels include want.
func find(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if got[k] != v {
				match = false
			}
		}
		if match {
			return m
		}
	}
	return nil
}

func TestDeliveriesAndErrors(t *testing.T) {
	m := New()
	m.ObserveDelivery("call-start", "accepted", 3*time.Millisecond)
	m.ObserveDelivery("call-start", "accepted", 40*time.Millisecond)
	m.ObserveDelivery("call-end", "signature_invalid", time.Millisecond)
	m.CountError("signature_invalid", http.StatusUnauthorized)
	m.ObserveCallRecorded("call-start", 120*time.Millisecond)
	m.ObserveTrigger("webhook", "delivered")

	fams := scrape(t, m)

	t.Run("deliveries by kind and result", func(t *testing.T) {
		got := find(fams, "ctmflow_webhook_deliveries_total",
			map[string]string{"kind": "call-start", "result": "accepted"})
		require.NotNil(t, got)
		assert.Equal(t, 2.0, got.GetCounter().GetValue())
		got = find(fams, "ctmflow_webhook_deliveries_total",
			map[string]string{"kind": "call-end", "result": "signature_invalid"})
		require.NotNil(t, got)
		assert.Equal(t, 1.0, got.GetCounter().GetValue())
	})
	t.Run("ack latency histogram", func(t *testing.T) {
		got := find(fams, "ctmflow_webhook_ack_seconds", map[string]string{"kind": "call-start"})
		require.NotNil(t, got)
		h := got.GetHistogram()
		assert.Equal(t, uint64(2), h.GetSampleCount())
		assert.InDelta(t, 0.043, h.GetSampleSum(), 1e-9)
	})
	t.Run("http errors by code and status", func(t *testing.T) {
		got := find(fams, "ctmflow_http_errors_total",
			map[string]string{"code": "signature_invalid", "status": "401"})
		require.NotNil(t, got)
		assert.Equal(t, 1.0, got.GetCounter().GetValue())
	})
	t.Run("call to lead latency", func(t *testing.T) {
		got := find(fams, "ctmflow_call_lead_seconds", map[string]string{"kind": "call-start"})
		require.NotNil(t, got)
		assert.Equal(t, uint64(1), got.GetHistogram().GetSampleCount())
	})
	t.Run("trigger deliveries", func(t *testing.T) {
		got := find(fams, "ctmflow_trigger_deliveries_total",
			map[string]string{"trigger": "webhook", "result": "delivered"})
		require.NotNil(t, got)
		assert.Equal(t, 1.0, got.GetCounter().GetValue())
	})
	t.Run("runtime collectors", func(t *testing.T) {
		assert.Contains(t, fams, "go_goroutines")
		assert.Contains(t, fams, "process_cpu_seconds_total")
	})
}

func TestInboxBacklog(t *testing.T) {
	t.Run("reports pending and the oldest's age at scrape time", func(t *testing.T) {
		m := New()
		oldest := time.Now().Add(-90 * time.Second)
		m.WatchInbox(func(context.Context) (int64, time.Time, error) {
			return 7, oldest, nil
		}, time.Second)

		fams := scrape(t, m)
		require.Contains(t, fams, "ctmflow_inbox_pending")
		assert.Equal(t, 7.0, fams["ctmflow_inbox_pending"].GetMetric()[0].GetGauge().GetValue())
		age := fams["ctmflow_inbox_oldest_pending_age_seconds"].GetMetric()[0].GetGauge().GetValue()
		assert.GreaterOrEqual(t, age, 90.0)
		assert.Less(t, age, 120.0)
	})
	t.Run("an empty inbox has age zero", func(t *testing.T) {
		m := New()
		m.WatchInbox(func(context.Context) (int64, time.Time, error) {
			return 0, time.Time{}, nil
		}, time.Second)
		fams := scrape(t, m)
		assert.Equal(t, 0.0, fams["ctmflow_inbox_oldest_pending_age_seconds"].GetMetric()[0].GetGauge().GetValue())
	})
	t.Run("a failing or slow database leaves the series out and counts it", func(t *testing.T) {
		m := New()
		m.WatchInbox(func(ctx context.Context) (int64, time.Time, error) {
			<-ctx.Done() // the scrape's timeout ends the query
			return 0, time.Time{}, errors.New("database unreachable")
		}, 20*time.Millisecond)
		m.ObserveDelivery("call-start", "accepted", time.Millisecond)

		fams := scrape(t, m)
		assert.NotContains(t, fams, "ctmflow_inbox_pending")
		assert.Contains(t, fams, "ctmflow_webhook_deliveries_total", "the rest is still served")

		fams = scrape(t, m)
		require.Contains(t, fams, "ctmflow_inbox_stats_errors_total")
		assert.GreaterOrEqual(t, fams["ctmflow_inbox_stats_errors_total"].GetMetric()[0].GetCounter().GetValue(), 1.0)
	})
}

func TestNilMetricsIsSilent(t *testing.T) {
	var m *Metrics
	m.ObserveDelivery("call-start", "accepted", time.Millisecond)
	m.CountError("internal", 500)
	m.ObserveCallRecorded("call-start", time.Millisecond)
	m.ObserveTrigger("webhook", "failed")
	m.WatchInbox(nil, time.Second)
	m.TemporalHandler().WithTags(map[string]string{"a": "b"}).Counter("x").Inc(1)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	assert.Equal(t, http.StatusNotFound, rec.Code)
}

func TestNamesFollowPrometheusConventions(t *testing.T) {
	m := New()
	m.ObserveDelivery("call-start", "accepted", time.Millisecond)
	m.CountError("internal", 500)
	m.ObserveCallRecorded("call-start", time.Millisecond)
	m.ObserveTrigger("webhook", "delivered")
	h := m.TemporalHandler()
	h.Counter("temporal_request").Inc(1)
	h.Timer("temporal_request_latency").Record(time.Millisecond)
	h.Gauge("temporal_num_pollers").Update(2)

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)

	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	require.NoError(t, err)
	var ours []promlint.Problem
	for _, p := range problems {
		// The SDK's metrics carry generated help; judge only our own.
		if len(p.Metric) > len(Namespace) && p.Metric[:len(Namespace)] == Namespace {
			ours = append(ours, p)
		}
	}
	assert.Empty(t, ours)
}

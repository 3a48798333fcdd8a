package metrics

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTemporalHandler(t *testing.T) {
	m := New()
	h := m.TemporalHandler()
	ns := h.WithTags(map[string]string{"namespace": "default"})

	// The SDK reports one name with different tag sets from different
	// call sites; a Prometheus family needs one set of label names.
	ns.Counter("temporal_request").Inc(1)
	ns.WithTags(map[string]string{"operation": "SignalWithStartWorkflowExecution"}).
		Counter("temporal_request").Inc(2)
	ns.WithTags(map[string]string{"operation": "SignalWithStartWorkflowExecution"}).
		Counter("temporal_request").Inc(1)
	ns.WithTags(map[string]string{"task_queue": "ctmflow", "worker_type": "WorkflowWorker"}).
		Gauge("temporal_num_pollers").Update(2)
	timer := ns.WithTags(map[string]string{"activity_type": "RecordCall"}).
		Timer("temporal_activity_execution_latency")
	timer.Record(3 * time.Millisecond)
	timer.Record(2 * time.Second)

	fams := scrape(t, m)

	t.Run("counters end in _total, series with the union of labels", func(t *testing.T) {
		f := fams["temporal_request_total"]
		require.NotNil(t, f)
		require.Len(t, f.GetMetric(), 2)
		for _, s := range f.GetMetric() {
			var names []string
			for _, l := range s.GetLabel() {
				names = append(names, l.GetName())
			}
			assert.Equal(t, []string{"namespace", "operation"}, names)
		}
		got := find(fams, "temporal_request_total", map[string]string{
			"namespace": "default", "operation": "SignalWithStartWorkflowExecution"})
		require.NotNil(t, got)
		assert.Equal(t, 3.0, got.GetCounter().GetValue())
		bare := find(fams, "temporal_request_total", map[string]string{"operation": ""})
		require.NotNil(t, bare)
		assert.Equal(t, 1.0, bare.GetCounter().GetValue())
	})
	t.Run("gauges keep the last value", func(t *testing.T) {
		got := find(fams, "temporal_num_pollers", map[string]string{"worker_type": "WorkflowWorker"})
		require.NotNil(t, got)
		assert.Equal(t, 2.0, got.GetGauge().GetValue())
	})
	t.Run("timers are histograms in seconds", func(t *testing.T) {
		got := find(fams, "temporal_activity_execution_latency_seconds",
			map[string]string{"activity_type": "RecordCall"})
		require.NotNil(t, got)
		hist := got.GetHistogram()
		assert.Equal(t, uint64(2), hist.GetSampleCount())
		assert.InDelta(t, 2.003, hist.GetSampleSum(), 1e-9)
		for _, b := range hist.GetBucket() {
			switch b.GetUpperBound() {
			case .005:
				assert.Equal(t, uint64(1), b.GetCumulativeCount(), "le=0.005")
			case 2.5:
				assert.Equal(t, uint64(2), b.GetCumulativeCount(), "le=2.5")
			}
		}
	})
	t.Run("WithTags does not change its parent", func(t *testing.T) {
		parent := h.WithTags(map[string]string{"a": "1"})
		_ = parent.WithTags(map[string]string{"a": "2", "b": "x"})
		parent.Counter("temporal_probe").Inc(1)
		fams := scrape(t, m)
		got := find(fams, "temporal_probe_total", map[string]string{"a": "1", "b": ""})
		require.NotNil(t, got)
	})
}

func TestPromName(t *testing.T) {
	cases := map[string]struct {
		name string
		kind sdkKind
		want string
	}{
		"counter gets _total":      {"temporal_request", sdkCounter, "temporal_request_total"},
		"counter keeps its _total": {"x_total", sdkCounter, "x_total"},
		"timer gets _seconds":      {"temporal_request_latency", sdkTimer, "temporal_request_latency_seconds"},
		"gauge unchanged":          {"temporal_num_pollers", sdkGauge, "temporal_num_pollers"},
		"invalid characters":       {"temporal.request-x", sdkGauge, "temporal_request_x"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, promName(tc.name, tc.kind))
		})
	}
}

func BenchmarkTemporalCounter(b *testing.B) {
	h := New().TemporalHandler().WithTags(map[string]string{"namespace": "default", "operation": "Poll"})
	b.ReportAllocs()
	for b.Loop() {
		h.Counter("temporal_request").Inc(1)
	}
}

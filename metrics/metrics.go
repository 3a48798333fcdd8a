// Package metrics is what ctmflow tells Prometheus: webhook deliveries and
// how fast they were acknowledged, HTTP error responses, the inbox backlog,
// how long a ringing call takes to become a lead, trigger deliveries, and
// the Temporal SDK's own metrics, all on one registry served at /metrics.
//
// Labels hold kinds, result codes and statuses only: never an account,
// call or lead id (unbounded) and never anything about a caller (PHI).
//
// Every method is safe on a nil *Metrics, so code that reports can run
// without a registry, as tests do.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"
)

// Namespace prefixes ctmflow's own metrics.
const Namespace = "ctmflow"

// latencyBuckets span an in-process store (a few milliseconds) to a
// Temporal outage the relay waits out (minutes), in seconds.
var latencyBuckets = []float64{
	.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300,
}

// Metrics holds the registry and every metric ctmflow reports.
type Metrics struct {
	reg *prometheus.Registry

	deliveries  *prometheus.CounterVec
	ackSeconds  *prometheus.HistogramVec
	httpErrors  *prometheus.CounterVec
	leadSeconds *prometheus.HistogramVec
	triggers    *prometheus.CounterVec
	inboxErrors prometheus.Counter

	sdk *sdkSink
}

// New returns metrics on a fresh registry, with the Go runtime's and the
// process's own collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "webhook_deliveries_total",
		Help: "CTM webhook deliveries by kind (call-start, call-end, call-update, " +
			"text-message) and result (accepted, duplicate, or the error code).",
	}, []string{"kind", "result"})
	m.ackSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "webhook_ack_seconds",
		Help: "Time from a webhook request's arrival to its answer, storing " +
			"included, by kind.",
		Buckets: latencyBuckets,
	}, []string{"kind"})
	m.httpErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "http_errors_total",
		Help:      "HTTP error responses by error code and status.",
	}, []string{"code", "status"})
	m.leadSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "call_lead_seconds",
		Help: "Time from the arrival of a call's first webhook to its call row " +
			"(and lead) existing in the CRM, by the kind of that webhook.",
		Buckets: latencyBuckets,
	}, []string{"kind"})
	m.triggers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "trigger_deliveries_total",
		Help:      "Downstream trigger deliveries by trigger and result.",
	}, []string{"trigger", "result"})
	m.inboxErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "inbox_stats_errors_total",
		Help:      "Scrapes whose inbox backlog query failed or timed out.",
	})
	m.sdk = newSDKSink()

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.deliveries, m.ackSeconds, m.httpErrors, m.leadSeconds,
		m.triggers, m.inboxErrors, m.sdk,
	)
	return m
}

// Registry is where the metrics live, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler serves the registry in Prometheus's text format. A collector
// that fails leaves its metrics out; the rest are still served.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// ObserveDelivery counts one webhook delivery and its time to answer. Its
// signature is webhook.Options.Observe's.
func (m *Metrics) ObserveDelivery(kind, result string, took time.Duration) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(kind, result).Inc()
	m.ackSeconds.WithLabelValues(kind).Observe(took.Seconds())
}

// CountError counts one HTTP error response. Its signature is
// server.Options.CountError's.
func (m *Metrics) CountError(code string, status int) {
	if m == nil {
		return
	}
	m.httpErrors.WithLabelValues(code, strconv.Itoa(status)).Inc()
}

// ObserveCallRecorded records how long after its webhook arrived a call
// row was created; kind is that webhook's kind.
func (m *Metrics) ObserveCallRecorded(kind string, sinceReceived time.Duration) {
	if m == nil {
		return
	}
	m.leadSeconds.WithLabelValues(kind).Observe(sinceReceived.Seconds())
}

// ObserveTrigger counts one downstream trigger delivery, for the triggers
// that consume lead events. trigger names the trigger's type or its
// configured name, result says how the attempt ended ("delivered",
// "failed", "retrying", "skipped", …). Both must come from small fixed
// sets: never a URL, an id or anything about the lead.
func (m *Metrics) ObserveTrigger(trigger, result string) {
	if m == nil {
		return
	}
	m.triggers.WithLabelValues(trigger, result).Inc()
}

// InboxStatsFunc reports the inbox backlog: how many deliveries are not
// yet handed to a workflow, and when the oldest of them arrived (zero when
// none is pending).
type InboxStatsFunc func(ctx context.Context) (pending int64, oldest time.Time, err error)

// WatchInbox reports the inbox backlog at each scrape, asking stats with
// timeout so that a slow database cannot hang the scrape. The backlog is
// the database's, not the process's: every webhook replica reports the
// same figure (aggregate with max, not sum). Watching twice keeps the
// first.
func (m *Metrics) WatchInbox(stats InboxStatsFunc, timeout time.Duration) {
	if m == nil {
		return
	}
	_ = m.reg.Register(&inboxCollector{stats: stats, timeout: timeout, errors: m.inboxErrors})
}

// TemporalHandler is the handler to give the Temporal SDK client
// (client.Options.MetricsHandler), which passes it on to its workers.
func (m *Metrics) TemporalHandler() client.MetricsHandler {
	if m == nil {
		return client.MetricsNopHandler
	}
	return sdkHandler{sink: m.sdk}
}

var (
	pendingDesc = prometheus.NewDesc(Namespace+"_inbox_pending",
		"Deliveries stored but not yet handed to their workflow.", nil, nil)
	oldestDesc = prometheus.NewDesc(Namespace+"_inbox_oldest_pending_age_seconds",
		"Age of the oldest delivery not yet handed to its workflow; 0 when none is.", nil, nil)
)

// inboxCollector asks the database at scrape time rather than on a timer:
// the figure is fresh when read and costs nothing when nobody reads it.
type inboxCollector struct {
	stats   InboxStatsFunc
	timeout time.Duration
	errors  prometheus.Counter
}

func (c *inboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- oldestDesc
}

func (c *inboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	pending, oldest, err := c.stats(ctx)
	if err != nil {
		// A missing series is honest; a stale or zero one would say the
		// backlog is empty while the database is unreachable.
		c.errors.Inc()
		return
	}
	age := 0.0
	if !oldest.IsZero() {
		age = max(time.Since(oldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(pending))
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
}

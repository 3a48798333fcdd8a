package metrics

import (
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

// The Temporal SDK reports through client.MetricsHandler: counters, gauges
// and timers named like "temporal_request", tagged with whatever the call
// site knows (namespace, task_queue, workflow_type, …). The same name can
// come with different tag sets, which a Prometheus metric family cannot:
// its series must share label names. sdkSink keeps every series it has
// seen and, at each scrape, gives every series of a family the union of
// the family's label names, the missing ones empty (Prometheus treats an
// empty label as absent, so queries read as if the label were not there).
//
// Names follow Prometheus's conventions: counters end in _total, timers
// become histograms in seconds ending in _seconds.

// sdkBuckets cover a poll or RPC (milliseconds) to a call's whole
// workflow (hours), in seconds.
var sdkBuckets = []float64{
	.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 14400,
}

type sdkKind int

const (
	sdkCounter sdkKind = iota
	sdkGauge
	sdkTimer
)

// sdkSink is an unchecked prometheus.Collector: it describes nothing up
// front, since the SDK's metric names are known only once reported.
type sdkSink struct {
	mu       sync.RWMutex
	families map[string]*sdkFamily
}

type sdkFamily struct {
	name   string
	kind   sdkKind
	series map[string]*sdkSeries
	labels map[string]bool
}

// sdkSeries is one name and tag set. Counters and gauges keep their value
// as float64 bits; timers keep bucket counts.
type sdkSeries struct {
	tags    map[string]string
	bits    atomic.Uint64
	mu      sync.Mutex
	count   uint64
	sum     float64
	buckets []uint64
}

func newSDKSink() *sdkSink {
	return &sdkSink{families: map[string]*sdkFamily{}}
}

var invalidName = regexp.MustCompile(`[^a-zA-Z0-9_]`)

func promName(name string, kind sdkKind) string {
	name = invalidName.ReplaceAllString(name, "_")
	switch {
	case kind == sdkCounter && !strings.HasSuffix(name, "_total"):
		name += "_total"
	case kind == sdkTimer && !strings.HasSuffix(name, "_seconds"):
		name += "_seconds"
	}
	return name
}

// series returns the series of name and tags, creating it on first use.
// The SDK asks for a metric each time it reports one, so the common path
// is a read lock and a map lookup.
func (s *sdkSink) series(name string, kind sdkKind, tags map[string]string) *sdkSeries {
	name = promName(name, kind)
	key := seriesKey(tags)

	s.mu.RLock()
	f := s.families[name]
	var ser *sdkSeries
	if f != nil {
		ser = f.series[key]
	}
	s.mu.RUnlock()
	if ser != nil {
		return ser
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	f = s.families[name]
	if f == nil {
		f = &sdkFamily{name: name, kind: kind, series: map[string]*sdkSeries{}, labels: map[string]bool{}}
		s.families[name] = f
	}
	if ser = f.series[key]; ser != nil {
		return ser
	}
	ser = &sdkSeries{tags: cleanTags(tags)}
	if kind == sdkTimer {
		ser.buckets = make([]uint64, len(sdkBuckets))
	}
	for k := range ser.tags {
		f.labels[k] = true
	}
	f.series[key] = ser
	return ser
}

func seriesKey(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(tags[k])
		b.WriteByte(0)
	}
	return b.String()
}

func cleanTags(tags map[string]string) map[string]string {
	out := make(map[string]string, len(tags))
	for k, v := range tags {
		k = invalidName.ReplaceAllString(k, "_")
		if k == "" || k[0] >= '0' && k[0] <= '9' || strings.HasPrefix(k, "__") {
			k = "tag_" + k
		}
		out[k] = v
	}
	return out
}

func (s *sdkSeries) add(v float64) {
	for {
		old := s.bits.Load()
		next := math.Float64bits(math.Float64frombits(old) + v)
		if s.bits.CompareAndSwap(old, next) {
			return
		}
	}
}

func (s *sdkSeries) set(v float64) { s.bits.Store(math.Float64bits(v)) }

func (s *sdkSeries) observe(d time.Duration) {
	v := d.Seconds()
	i := sort.SearchFloat64s(sdkBuckets, v)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count++
	s.sum += v
	if i < len(s.buckets) {
		s.buckets[i]++
	}
}

func (s *sdkSink) Describe(chan<- *prometheus.Desc) {}

func (s *sdkSink) Collect(ch chan<- prometheus.Metric) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, f := range s.families {
		labels := make([]string, 0, len(f.labels))
		for k := range f.labels {
			labels = append(labels, k)
		}
		slices.Sort(labels)
		desc := prometheus.NewDesc(f.name, "Temporal SDK metric "+f.name+".", labels, nil)

		for _, ser := range f.series {
			values := make([]string, len(labels))
			for i, k := range labels {
				values[i] = ser.tags[k]
			}
			switch f.kind {
			case sdkCounter:
				ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue,
					math.Float64frombits(ser.bits.Load()), values...)
			case sdkGauge:
				ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue,
					math.Float64frombits(ser.bits.Load()), values...)
			case sdkTimer:
				ch <- ser.histogram(desc, values)
			}
		}
	}
}

func (s *sdkSeries) histogram(desc *prometheus.Desc, values []string) prometheus.Metric {
	s.mu.Lock()
	defer s.mu.Unlock()
	cumulative := make(map[float64]uint64, len(sdkBuckets))
	var n uint64
	for i, upper := range sdkBuckets {
		n += s.buckets[i]
		cumulative[upper] = n
	}
	return prometheus.MustNewConstHistogram(desc, s.count, s.sum, cumulative, values...)
}

// sdkHandler is the client.MetricsHandler the SDK reports through.
type sdkHandler struct {
	sink *sdkSink
	tags map[string]string
}

func (h sdkHandler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := make(map[string]string, len(h.tags)+len(tags))
	for k, v := range h.tags {
		merged[k] = v
	}
	for k, v := range tags {
		merged[k] = v
	}
	return sdkHandler{sink: h.sink, tags: merged}
}

func (h sdkHandler) Counter(name string) client.MetricsCounter {
	s := h.sink.series(name, sdkCounter, h.tags)
	return counterFunc(func(d int64) { s.add(float64(d)) })
}

func (h sdkHandler) Gauge(name string) client.MetricsGauge {
	s := h.sink.series(name, sdkGauge, h.tags)
	return gaugeFunc(s.set)
}

func (h sdkHandler) Timer(name string) client.MetricsTimer {
	s := h.sink.series(name, sdkTimer, h.tags)
	return timerFunc(s.observe)
}

type counterFunc func(int64)

func (f counterFunc) Inc(d int64) { f(d) }

type gaugeFunc func(float64)

func (f gaugeFunc) Update(v float64) { f(v) }

type timerFunc func(time.Duration)

func (f timerFunc) Record(d time.Duration) { f(d) }

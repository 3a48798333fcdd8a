// Package bench measures ctmflow the way CTM loads it: signed call
// lifecycles (start, end, late update, duplicates) at a target rate or at
// saturation, timed from the client's side — webhook ack, the lead
// visible in the API, the lead updated — beside the bare Temporal engine's
// floor measured on the same server in the same run.
package bench

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// Dist collects durations and summarises them.
type Dist struct {
	mu sync.Mutex
	d  []time.Duration
}

// Add records one duration.
func (d *Dist) Add(v time.Duration) {
	d.mu.Lock()
	d.d = append(d.d, v)
	d.mu.Unlock()
}

// Summary is a distribution's figures.
type Summary struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50"`
	P90 time.Duration `json:"p90"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
}

// Summary sorts a copy and reads the percentiles (nearest rank).
func (d *Dist) Summary() Summary {
	d.mu.Lock()
	v := slices.Clone(d.d)
	d.mu.Unlock()
	if len(v) == 0 {
		return Summary{}
	}
	slices.Sort(v)
	return Summary{
		N:   len(v),
		P50: rank(v, 0.50),
		P90: rank(v, 0.90),
		P99: rank(v, 0.99),
		Max: v[len(v)-1],
	}
}

func rank(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func (s Summary) String() string {
	if s.N == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s  (n=%d)",
		ms(s.P50), ms(s.P90), ms(s.P99), ms(s.Max), s.N)
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

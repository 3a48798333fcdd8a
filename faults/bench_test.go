package faults

import (
	"slices"
	"testing"
	"time"

	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
)

// benchRate is the steady load of the ack benchmark, webhooks a second.
const benchRate = 50

// BenchmarkAckLatency measures how long CTM waits for its answer under a
// steady load, on the webhook process (the ctmflow binary): with Temporal
// up and a worker running the workflows beside it, with Temporal up and
// the worker stopped, and with Temporal unreachable. The answer waits
// only on the database, never on Temporal. Each op is one webhook (a call's start or end) at
// benchRate a second; ns/op is the mean ack latency, p50-ms and p99-ms
// its percentiles, as the sender measures them over loopback.
//
//	go test -run '^$' -bench AckLatency -benchtime 1500x ./faults
func BenchmarkAckLatency(b *testing.B) {
	for _, db := range []string{store.Postgres, store.SQLite} {
		b.Run("db="+db, func(b *testing.B) {
			url := testenv.SQLiteURL(b)
			if db == store.Postgres {
				url = testenv.PostgresURL(b)
			}
			temporal := startTemporal(b)
			s := newSetup(b, url, temporal.addr)
			s.webhook(nil)
			worker := s.worker()

			// With the worker stopped, Temporal still takes every
			// SignalWithStart but no workflow runs: what is left of the
			// difference between up and down is the workflows' work on
			// the same cores and database, not a wait on Temporal.
			next := int64(3_000_000)
			for _, state := range []string{"temporal=up", "temporal=up,worker=stopped", "temporal=down"} {
				b.Run(state, func(b *testing.B) {
					if state != "temporal=up" && worker.running() {
						worker.stop()
					}
					if state == "temporal=down" && temporal.running() {
						temporal.stop()
					}
					calls := (b.N + 1) / 2
					_, sends := callSends(s, calls, next)
					next += int64(calls)
					sends = sends[:b.N]

					l := newLoad(s, benchRate)
					b.ResetTimer()
					results := l.run(ctx(b, 10*time.Minute), sends)
					b.StopTimer()

					if sum := summarize(results); sum.acked != len(sends) {
						b.Fatalf("not every webhook acknowledged: %s", sum)
					}
					p50, p99, mean := percentiles(l.attempts())
					b.ReportMetric(float64(mean.Nanoseconds()), "ns/op")
					b.ReportMetric(ms(p50), "p50-ms")
					b.ReportMetric(ms(p99), "p99-ms")
				})
			}
		})
	}
}

func percentiles(attempts []attempt) (p50, p99, mean time.Duration) {
	ds := make([]time.Duration, 0, len(attempts))
	var total time.Duration
	for _, a := range attempts {
		d := a.end.Sub(a.start)
		ds = append(ds, d)
		total += d
	}
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration {
		i := int(q*float64(len(ds))+0.5) - 1
		return ds[min(max(i, 0), len(ds)-1)]
	}
	return at(0.50), at(0.99), total / time.Duration(len(ds))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

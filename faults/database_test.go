package faults

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/teststack"
)

// The CRM database crashes and comes back under load. While it is down
// CTM gets 503 with Retry-After, never 2xx; nothing acknowledged before
// or after is lost, and once CTM's retries land every call ends.
func TestDatabaseRestartedUnderLoad(t *testing.T) {
	const calls, rate = 100, 20.0
	pg := startPostgres(t)
	s := newSetup(t, pg.URL(), teststack.Temporal(t).HostPort())
	s.webhook(nil)
	s.worker()

	samples, sends := callSends(s, calls, 9_000_000)
	l := newLoad(s, rate)
	done := make(chan []result, 1)
	go func() { done <- l.run(ctx(t, 5*time.Minute), sends) }()

	waitFor(t, time.Minute, "a third of the load", func() bool {
		return l.started.Load() >= int64(len(sends)/3)
	})
	_ = s.store.Close() // its connections die with the server
	pg.crash()
	down := time.Now()
	downAt := l.started.Load()
	waitFor(t, time.Minute, "forty webhooks sent while the database is down", func() bool {
		return l.started.Load() >= downAt+40
	})
	up := time.Now()
	pg.start()
	s.store = openStore(t, pg.URL())

	results := <-done
	before := summarize(results)
	l.retry(t, sends, results, 2*time.Minute)
	after := summarize(results)
	t.Logf("load at %.0f/s: %s; after CTM's retries: %d acknowledged", rate, before, after.acked)

	assert.Positive(t, before.unavailable, "CTM was told the database was unavailable")
	assert.Zero(t, before.other, "nothing but 2xx and 503")
	noRetryAfter := 0
	for _, r := range results {
		noRetryAfter += r.noRetryAfter
	}
	assert.Zero(t, noRetryAfter, "every 503 says when to retry")

	// Within the outage — sent after the crash, answered before the
	// restart began — every answer is a 503.
	within := map[int]int{}
	for _, a := range l.attempts() {
		if a.start.After(down) && a.end.Before(up) {
			within[a.status]++
		}
	}
	t.Logf("answers while the database was down: %v", within)
	assert.Positive(t, within[http.StatusServiceUnavailable])
	assert.Equal(t, within[http.StatusServiceUnavailable], sumValues(within), "only 503 while down")

	n := checkNothingLost(t, s, sends, results, 3*time.Minute)
	checkCallsEnded(t, s, samples, 3*time.Minute)
	t.Logf("deliveries acknowledged: %d, reached their workflow: %d, lost: 0", n, n)
}

func openStore(t *testing.T, url string) *store.Store {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(c, url, store.Options{MaxOpenConns: 4})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func sumValues(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

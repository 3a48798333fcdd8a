package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/teststack"
	"github.com/ctmflow/ctmflow/triggers"
)

// BenchmarkLiveTransfer measures the live-transfer path on the whole
// in-process stack (real Temporal server, worker, HTTP, database): from
// the moment CTM would get its answer to a call-start webhook, to the
// moment a lead.created trigger's request reaches the dialer. Calls go
// one after another, each from a new caller.
//
//	go test ./e2e -run '^$' -bench BenchmarkLiveTransfer -benchtime 300x
func BenchmarkLiveTransfer(b *testing.B) {
	for _, db := range []testenv.Database{
		{Name: "sqlite", URL: testenv.SQLiteURL(b)},
		{Name: "postgres", URL: testenv.PostgresURL(b)},
	} {
		b.Run(db.Name, func(b *testing.B) { benchLiveTransfer(b, db.URL) })
	}
}

func benchLiveTransfer(b *testing.B, dbURL string) {
	// Production settings, but for the dialer on 127.0.0.1.
	s := teststack.Start(b, teststack.Options{DatabaseURL: dbURL,
		Env: map[string]string{"OUTBOUND_ALLOWLIST": "127.0.0.1/32"}})

	var mu sync.Mutex
	arrived := map[int64]chan time.Time{}
	wait := func(callID int64) chan time.Time {
		mu.Lock()
		defer mu.Unlock()
		ch, ok := arrived[callID]
		if !ok {
			ch = make(chan time.Time, 1)
			arrived[callID] = ch
		}
		return ch
	}
	dialer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		var p triggers.Payload
		if err := json.Unmarshal(body, &p); err == nil && p.Data.Call != nil {
			wait(p.Data.Call.CTMCallID) <- at
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer dialer.Close()
	if _, _, err := net.SplitHostPort(dialer.Listener.Addr().String()); err != nil {
		b.Fatal(err)
	}
	var rule map[string]any
	status := s.Call(b, http.MethodPost, "/api/triggers", map[string]any{
		"name": "Live transfer", "event": models.EventLeadCreated,
		"destination": map[string]any{"url": dialer.URL},
	}, &rule)
	if status != http.StatusCreated {
		b.Fatalf("creating rule: %d %v", status, rule)
	}

	// One untimed call warms the worker, the connections and the caches.
	post := func(i int) (int64, time.Time) {
		callID := int64(900_000 + i)
		phone := fmt.Sprintf("+1239%03d%04d", 200+(i/10000)%800, i%10000)
		status, body := s.Post(b, "call-start", s.Sample(callID, phone).StartBody())
		if status != http.StatusAccepted {
			b.Fatalf("call-start: %d %v", status, body)
		}
		return callID, time.Now()
	}
	callID, _ := post(0)
	<-wait(callID)

	latencies := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		callID, acked := post(i + 1)
		select {
		case got := <-wait(callID):
			latencies = append(latencies, got.Sub(acked))
		case <-time.After(30 * time.Second):
			b.Fatalf("call %d: no trigger request within 30s", callID)
		}
	}
	b.StopTimer()

	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)-1].Microseconds())/1000, "max-ms")
}

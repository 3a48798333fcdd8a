package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
)

// send is one webhook the load posts.
type send struct {
	callID int64
	path   string
	body   []byte
	// ctmTime is the X-CTM-Time to sign with; 0 signs with the time of
	// each attempt, as a sender that re-signs its retries does.
	ctmTime int64
}

// result is what became of one send.
type result struct {
	// status is the last answer's status; 0 when nothing answered.
	status     int
	deliveryID int64
	tries      int
	// unavailable counts 503 answers, and unanswered counts attempts
	// that got no answer at all (refused, reset, timed out).
	unavailable int
	unanswered  int
	// noRetryAfter counts 503 answers without a Retry-After header.
	noRetryAfter int
}

func (r result) acked() bool { return r.status == http.StatusOK || r.status == http.StatusAccepted }

// load posts signed webhooks from a pool of goroutines at a steady rate,
// to 127.0.0.1 only, and stops by itself once every send was tried.
type load struct {
	s       *setup
	rate    float64
	workers int
	client  *http.Client

	started atomic.Int64
	acked   atomic.Int64

	mu  sync.Mutex
	log []attempt
}

// attempt is one request of the load: when it was sent, when its answer
// came, and the answer's status (0 for none).
type attempt struct {
	start, end time.Time
	status     int
}

func (l *load) attempts() []attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]attempt(nil), l.log...)
}

func (l *load) note(a attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log = append(l.log, a)
}

func newLoad(s *setup, rate float64) *load {
	workers := 8
	return &load{
		s:       s,
		rate:    rate,
		workers: workers,
		client: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: workers},
		},
	}
}

// run tries each send once, in order, at the load's rate. A send that was
// not acknowledged is left to retry, as CTM would retry it later.
func (l *load) run(ctx context.Context, sends []send) []result {
	results := make([]result, len(sends))
	next := make(chan int)
	var wg sync.WaitGroup
	for range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				l.post(ctx, sends[i], &results[i])
			}
		}()
	}

	tick := time.NewTicker(time.Duration(float64(time.Second) / l.rate))
	defer tick.Stop()
feed:
	for i := range sends {
		select {
		case <-ctx.Done():
			break feed
		case <-tick.C:
		}
		l.started.Add(1)
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

// retry posts every send not yet acknowledged again until all are, as
// CTM retries a delivery it got no 2xx for. It fails the test when some
// are still refused at timeout.
func (l *load) retry(t *testing.T, sends []send, results []result, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		left := 0
		for i := range sends {
			if results[i].acked() {
				continue
			}
			l.post(ctx, sends[i], &results[i])
			if !results[i].acked() {
				left++
			}
		}
		if left == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d sends still not acknowledged after %s of retries", left, timeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (l *load) post(ctx context.Context, snd send, res *result) {
	res.tries++
	ts := snd.ctmTime
	if ts == 0 {
		ts = time.Now().Unix()
	}
	tstr := strconv.FormatInt(ts, 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		l.s.base+"/webhooks/ctm/"+snd.path, bytes.NewReader(snd.body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(ctm.HeaderTime, tstr)
	req.Header.Set(ctm.HeaderSignature, ctm.Sign(l.s.secret, tstr, snd.body))

	began := time.Now()
	resp, err := l.client.Do(req)
	if err != nil {
		l.note(attempt{start: began, end: time.Now()})
		res.status = 0
		res.unanswered++
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	l.note(attempt{start: began, end: time.Now(), status: resp.StatusCode})
	res.status = resp.StatusCode
	switch resp.StatusCode {
	case http.StatusOK, http.StatusAccepted:
		var ok struct {
			DeliveryID int64 `json:"delivery_id"`
		}
		_ = json.Unmarshal(b, &ok)
		res.deliveryID = ok.DeliveryID
		l.acked.Add(1)
	case http.StatusServiceUnavailable:
		res.unavailable++
		if resp.Header.Get("Retry-After") == "" {
			res.noRetryAfter++
		}
	}
}

// summary is the load's tally, for the test log and the README.
type summary struct {
	sends, tries, acked, unavailable, unanswered, other int
}

func summarize(results []result) summary {
	var s summary
	for _, r := range results {
		s.sends++
		s.tries += r.tries
		s.unavailable += r.unavailable
		s.unanswered += r.unanswered
		switch {
		case r.acked():
			s.acked++
		case r.status != 0 && r.status != http.StatusServiceUnavailable:
			s.other++
		}
	}
	return s
}

func (s summary) String() string {
	return fmt.Sprintf("%d webhooks, %d attempts: %d acknowledged, %d answers 503, "+
		"%d attempts unanswered, %d other",
		s.sends, s.tries, s.acked, s.unavailable, s.unanswered, s.other)
}

// phone is the fictional number of caller i: 555-01xx numbers are
// reserved for fiction in North America.
func phone(i int) string {
	areas := []int{239, 305, 407, 561, 727, 813, 850, 904, 941, 954, 201, 212}
	return fmt.Sprintf("+1%d55501%02d", areas[(i/100)%len(areas)], i%100)
}

// callSends builds n calls of the setup's account, each a start and an
// end, interleaved the way a busy line produces them: a call's end comes a
// few webhooks after its start.
func callSends(s *setup, n int, firstID int64) ([]ctm.Sample, []send) {
	start := time.Now().Add(-time.Minute)
	var calls []ctm.Sample
	var sends []send
	const lag = 4
	for i := range n + lag {
		if i < n {
			c := ctm.Sample{AccountID: s.account, CallID: firstID + int64(i), Phone: phone(i), Start: start}
			calls = append(calls, c)
			sends = append(sends, send{callID: c.CallID, path: "call-start", body: c.StartBody()})
		}
		if j := i - lag; j >= 0 && j < n {
			c := calls[j]
			sends = append(sends, send{callID: c.CallID, path: "call-end", body: c.EndBody()})
		}
	}
	return calls, sends
}

// checkNothingLost checks that every acknowledged send is stored as what
// it was and reaches its workflow, which marks it processed. It returns
// how many deliveries that was.
func checkNothingLost(t *testing.T, s *setup, sends []send, results []result, timeout time.Duration) int {
	t.Helper()
	c := context.Background()
	ids := map[int64]bool{}
	for i, r := range results {
		if !r.acked() {
			continue
		}
		require.NotZero(t, r.deliveryID, "a 2xx names its delivery")
		d, err := s.store.GetDelivery(c, r.deliveryID)
		require.NoError(t, err, "acknowledged delivery %d is stored", r.deliveryID)
		assert.Equal(t, s.account, d.AccountID)
		assert.Equal(t, sends[i].callID, d.CTMID)
		assert.Equal(t, sends[i].path, d.Kind)
		assert.Equal(t, sends[i].body, d.Body)
		ids[r.deliveryID] = true
	}

	stored := len(ids)
	waitFor(t, timeout, "every acknowledged delivery processed by its workflow", func() bool {
		for id := range ids {
			d, err := s.store.GetDelivery(c, id)
			require.NoError(t, err)
			if d.ProcessedAt == nil {
				return false
			}
			delete(ids, id)
		}
		return true
	})
	return stored
}

// checkCallsEnded waits for every call to end with its recording,
// transcript and outcome, then checks that nothing was applied twice: one
// lead, one call row, each timeline event once.
func checkCallsEnded(t *testing.T, s *setup, calls []ctm.Sample, timeout time.Duration) {
	t.Helper()
	c := context.Background()
	waiting := map[int64]ctm.Sample{}
	for _, want := range calls {
		waiting[want.CallID] = want
	}
	waitFor(t, timeout, "every call's end steps", func() bool {
		for id, want := range waiting {
			call, err := s.store.GetCall(c, want.AccountID, want.CallID)
			if err != nil || call.Stage != models.StageEnded || call.Transcript == "" || call.RecordingURL == "" {
				return false
			}
			lead, err := s.store.GetLead(c, call.LeadID)
			require.NoError(t, err)
			if countEvents(lead)[models.EventRecordingReady] == 0 {
				return false
			}
			delete(waiting, id)
		}
		return true
	})

	for _, want := range calls {
		call, err := s.store.GetCall(c, want.AccountID, want.CallID)
		require.NoError(t, err, "call %d", want.CallID)
		assert.Equal(t, "answered", call.Status, "call %d", want.CallID)
		assert.Equal(t, 312, call.DurationSeconds, "call %d", want.CallID)
		assert.Equal(t, ctm.SampleTranscript, call.Transcript, "call %d", want.CallID)
		assert.Equal(t, want.Phone, call.CallerNumber, "call %d", want.CallID)

		lead, err := s.store.GetLead(c, call.LeadID)
		require.NoError(t, err)
		assert.Len(t, lead.Calls, 1, "call %d: one call row on its lead", want.CallID)
		assert.Equal(t, map[string]int{
			models.EventLeadCreated:     1,
			models.EventCallStarted:     1,
			models.EventRecordingReady:  1,
			models.EventTranscriptReady: 1,
			models.EventCallEnded:       1,
		}, countEvents(lead), "call %d: each event once", want.CallID)
	}
}

func countEvents(lead *models.Lead) map[string]int {
	counts := map[string]int{}
	for _, e := range lead.Events {
		counts[e.Type]++
	}
	return counts
}

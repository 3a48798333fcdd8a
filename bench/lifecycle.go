package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctmflow/ctmflow/api"
	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
)

// LifecycleOptions shape a run of call lifecycles.
type LifecycleOptions struct {
	// Rate is how many calls start per second; 0 runs Concurrency
	// lifecycles back to back (saturation).
	Rate float64
	// Concurrency is the number of back-to-back clients at saturation.
	// Default 16.
	Concurrency int
	// Duration is how long new calls keep starting.
	Duration time.Duration
	// EndAfter is how long a call "rings" after its lead is visible
	// before the end is posted. Default 0.
	EndAfter time.Duration
	// Duplicates is the share of calls whose start and end are posted
	// twice, as CTM's retries do. Default 0.1.
	Duplicates float64
	// LateUpdates is the share of calls that get a star-rating update
	// after their end was applied (a second run). Default 0.1.
	LateUpdates float64
	// Poll is the first API poll interval while waiting (it grows by a
	// quarter per poll up to 50 ms); it bounds the resolution of the
	// visibility figures. Default 2ms.
	Poll time.Duration
	// Timeout bounds each wait. Default 30s.
	Timeout time.Duration
	// Progress, when set, receives a progress line every second.
	Progress io.Writer
	// FirstCallID numbers the calls; each run needs fresh ids.
	FirstCallID int64
}

func (o LifecycleOptions) withDefaults() LifecycleOptions {
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Duplicates < 0 {
		o.Duplicates = 0
	}
	if o.Poll <= 0 {
		o.Poll = 2 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.FirstCallID == 0 {
		o.FirstCallID = time.Now().UnixMilli() * 1000
	}
	return o
}

// LifecycleReport is what a lifecycle run measured.
type LifecycleReport struct {
	Started   int64 `json:"started"`
	Completed int64 `json:"completed"`
	Errors    int64 `json:"errors"`
	// Ack is every webhook's latency, from request to answer.
	Ack Summary `json:"ack"`
	// StartToLead runs from the start webhook's ack to its lead and call
	// being visible in the API.
	StartToLead Summary `json:"start_to_lead"`
	// EndToUpdated runs from the end webhook's ack to the call showing
	// stage ended with its transcript.
	EndToUpdated Summary       `json:"end_to_updated"`
	Elapsed      time.Duration `json:"elapsed"`
	// Throughput is completed lifecycles per second.
	Throughput float64 `json:"throughput"`
	// WorkflowIDs of a sample of calls, for counting history events.
	CallIDs     []int64  `json:"-"`
	FirstErrors []string `json:"first_errors,omitempty"`
}

type lifecycleRun struct {
	t    *Target
	opts LifecycleOptions

	ack, lead, updated Dist
	started, completed atomic.Int64
	errors             atomic.Int64

	mu          sync.Mutex
	firstErrors []string
	sample      []int64
}

// Lifecycles runs call lifecycles against t.
func Lifecycles(ctx context.Context, t *Target, opts LifecycleOptions) LifecycleReport {
	opts = opts.withDefaults()
	r := &lifecycleRun{t: t, opts: opts}

	stopProgress := r.progress(ctx)
	begin := time.Now()
	var wg sync.WaitGroup
	next := atomic.Int64{}
	deadline := begin.Add(opts.Duration)

	if opts.Rate > 0 {
		interval := time.Duration(float64(time.Second) / opts.Rate)
		ticker := time.NewTicker(interval)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			id := opts.FirstCallID + next.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.one(ctx, id)
			}()
			select {
			case <-ticker.C:
			case <-ctx.Done():
			}
		}
		ticker.Stop()
	} else {
		for range opts.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) && ctx.Err() == nil {
					r.one(ctx, opts.FirstCallID+next.Add(1))
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(begin)
	stopProgress()

	rep := LifecycleReport{
		Started:      r.started.Load(),
		Completed:    r.completed.Load(),
		Errors:       r.errors.Load(),
		Ack:          r.ack.Summary(),
		StartToLead:  r.lead.Summary(),
		EndToUpdated: r.updated.Summary(),
		Elapsed:      elapsed,
		CallIDs:      r.sample,
		FirstErrors:  r.firstErrors,
	}
	rep.Throughput = float64(rep.Completed) / elapsed.Seconds()
	return rep
}

// one runs a call: start, wait for the lead, end, wait for the update,
// with duplicates and a late update now and then.
func (r *lifecycleRun) one(ctx context.Context, callID int64) {
	r.started.Add(1)
	ctx, cancel := context.WithTimeout(ctx, 3*r.opts.Timeout)
	defer cancel()
	s := ctm.Sample{AccountID: r.t.AccountID, CallID: callID, Phone: Phone(callID), Rating: 5}
	dup := rand.Float64() < r.opts.Duplicates
	late := rand.Float64() < r.opts.LateUpdates

	acked, err := r.deliver(ctx, "call-start", s.StartBody(), dup)
	if err != nil {
		r.fail(callID, err)
		return
	}
	seen, err := r.wait(ctx, s, func(*api.Call) bool { return true })
	if err != nil {
		r.fail(callID, fmt.Errorf("lead never visible: %w", err))
		return
	}
	r.lead.Add(seen.Sub(acked))

	if r.opts.EndAfter > 0 {
		time.Sleep(r.opts.EndAfter)
	}
	acked, err = r.deliver(ctx, "call-end", s.EndBody(), dup)
	if err != nil {
		r.fail(callID, err)
		return
	}
	seen, err = r.wait(ctx, s, func(c *api.Call) bool {
		return c.Stage == models.StageEnded && c.Transcript != "" && c.RecordingURL != ""
	})
	if err != nil {
		r.fail(callID, fmt.Errorf("end never applied: %w", err))
		return
	}
	r.updated.Add(seen.Sub(acked))

	if late {
		if _, err := r.deliver(ctx, "call-update", s.UpdateBody(), false); err != nil {
			r.fail(callID, err)
			return
		}
		if _, err := r.wait(ctx, s, func(c *api.Call) bool { return c.StarRating != nil }); err != nil {
			r.fail(callID, fmt.Errorf("late update never applied: %w", err))
			return
		}
	} else {
		r.mu.Lock()
		if len(r.sample) < 50 {
			r.sample = append(r.sample, callID)
		}
		r.mu.Unlock()
	}
	r.completed.Add(1)
}

// deliver posts a webhook (twice when dup) and returns when it was acked.
func (r *lifecycleRun) deliver(ctx context.Context, path string, body []byte, dup bool) (time.Time, error) {
	status, took, err := r.t.post(ctx, path, body)
	if err != nil {
		return time.Time{}, err
	}
	acked := time.Now()
	r.ack.Add(took)
	if status != http.StatusAccepted {
		return time.Time{}, fmt.Errorf("%s answered %d", path, status)
	}
	if dup {
		status, took, err := r.t.post(ctx, path, body)
		if err != nil {
			return time.Time{}, err
		}
		r.ack.Add(took)
		if status != http.StatusOK {
			return time.Time{}, fmt.Errorf("repeated %s answered %d, want 200", path, status)
		}
	}
	return acked, nil
}

func (r *lifecycleRun) wait(ctx context.Context, s ctm.Sample, cond func(*api.Call) bool) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	return r.t.waitCall(ctx, s.Phone, s.CallID, r.opts.Poll, cond)
}

func (r *lifecycleRun) fail(callID int64, err error) {
	r.errors.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.firstErrors) < 5 {
		r.firstErrors = append(r.firstErrors, fmt.Sprintf("call %d: %v", callID, err))
	}
}

func (r *lifecycleRun) progress(ctx context.Context) func() {
	if r.opts.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	begin := time.Now()
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				fmt.Fprintln(r.opts.Progress)
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				fmt.Fprintf(r.opts.Progress, "\r  %4.0fs  started %d  completed %d  errors %d  ack p99 %s  lead p99 %s   ",
					time.Since(begin).Seconds(), r.started.Load(), r.completed.Load(), r.errors.Load(),
					ms(r.ack.Summary().P99), ms(r.lead.Summary().P99))
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// areaCodes are real Florida area codes; with the fictional 555 exchange
// they make valid, unique, harmless numbers.
var areaCodes = []int64{239, 305, 321, 352, 386, 407, 561, 727, 772, 813, 850, 863, 904, 941, 954}

// Phone returns a distinct fictional number for each call id.
func Phone(callID int64) string {
	n := callID % (int64(len(areaCodes)) * 10000)
	return fmt.Sprintf("+1%d555%04d", areaCodes[n/10000], n%10000)
}

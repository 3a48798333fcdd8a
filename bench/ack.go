package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctmflow/ctmflow/ctm"
)

// AckOptions shape a run that only measures how fast webhooks are
// acknowledged: call starts at a steady rate, nothing waited for.
type AckOptions struct {
	// Rate is deliveries per second.
	Rate     float64
	Duration time.Duration
	// Progress, when set, receives a progress line every second.
	Progress    io.Writer
	FirstCallID int64
}

// AckReport is what an ack run measured.
type AckReport struct {
	Sent     int64         `json:"sent"`
	Accepted int64         `json:"accepted"`
	Errors   int64         `json:"errors"`
	Ack      Summary       `json:"ack"`
	Elapsed  time.Duration `json:"elapsed"`
	// Rate is the achieved deliveries per second.
	Rate        float64  `json:"rate"`
	FirstErrors []string `json:"first_errors,omitempty"`
}

// Acks posts call-start webhooks at opts.Rate for opts.Duration.
func Acks(ctx context.Context, t *Target, opts AckOptions) AckReport {
	if opts.FirstCallID == 0 {
		opts.FirstCallID = time.Now().UnixMilli() * 1000
	}
	var (
		ack              Dist
		sent, ok, failed atomic.Int64
		mu               sync.Mutex
		firstErrors      []string
		wg               sync.WaitGroup
	)
	fail := func(err error) {
		failed.Add(1)
		mu.Lock()
		if len(firstErrors) < 5 {
			firstErrors = append(firstErrors, err.Error())
		}
		mu.Unlock()
	}

	interval := time.Duration(float64(time.Second) / opts.Rate)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	begin := time.Now()
	lastProgress := begin
	for i := int64(1); time.Since(begin) < opts.Duration && ctx.Err() == nil; i++ {
		id := opts.FirstCallID + i
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := ctm.Sample{AccountID: t.AccountID, CallID: id, Phone: Phone(id)}
			sent.Add(1)
			status, took, err := t.post(ctx, "call-start", s.StartBody())
			if err != nil {
				fail(err)
				return
			}
			ack.Add(took)
			if status != http.StatusAccepted {
				fail(fmt.Errorf("call-start answered %d", status))
				return
			}
			ok.Add(1)
		}()
		if opts.Progress != nil && time.Since(lastProgress) >= time.Second {
			lastProgress = time.Now()
			fmt.Fprintf(opts.Progress, "\r  %4.0fs  sent %d  accepted %d  errors %d  ack p99 %s   ",
				time.Since(begin).Seconds(), sent.Load(), ok.Load(), failed.Load(), ms(ack.Summary().P99))
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
		}
	}
	wg.Wait()
	if opts.Progress != nil {
		fmt.Fprintln(opts.Progress)
	}
	elapsed := time.Since(begin)
	return AckReport{
		Sent:        sent.Load(),
		Accepted:    ok.Load(),
		Errors:      failed.Load(),
		Ack:         ack.Summary(),
		Elapsed:     elapsed,
		Rate:        float64(sent.Load()) / elapsed.Seconds(),
		FirstErrors: firstErrors,
	}
}

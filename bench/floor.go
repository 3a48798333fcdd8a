package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Floor measures the bare engine on the same server: the hops a call
// takes — SignalWithStart to a first step, a signal to a second — with no
// ctmflow code in them. ctmflow's figures are read against it.
type Floor struct {
	c  client.Client
	tq string
	w  sdkworker.Worker

	mu      sync.Mutex
	waiting map[string]chan time.Time
}

const (
	bareWorkflowName = "BenchBareWorkflow"
	bareStart        = "bare-start"
	bareEnd          = "bare-end"
)

// StartFloor runs the bare workflow's worker on a task queue of its own.
func StartFloor(c client.Client) (*Floor, error) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	f := &Floor{c: c, tq: "ctmflow-bench-floor-" + hex.EncodeToString(b), waiting: map[string]chan time.Time{}}
	f.w = sdkworker.New(c, f.tq, sdkworker.Options{})
	f.w.RegisterWorkflowWithOptions(bareWorkflow, workflow.RegisterOptions{Name: bareWorkflowName})
	f.w.RegisterActivityWithOptions(f.first, activity.RegisterOptions{Name: "BenchBareFirst"})
	f.w.RegisterActivityWithOptions(f.second, activity.RegisterOptions{Name: "BenchBareSecond"})
	if err := f.w.Start(); err != nil {
		return nil, fmt.Errorf("starting floor worker: %w", err)
	}
	return f, nil
}

// Stop stops the floor's worker.
func (f *Floor) Stop() { f.w.Stop() }

// bareWorkflow is the shape of a call with nothing in it: started by a
// signal, a first step, a second signal, a second step.
func bareWorkflow(ctx workflow.Context) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var id string
	workflow.GetSignalChannel(ctx, bareStart).Receive(ctx, &id)
	if err := workflow.ExecuteActivity(ctx, "BenchBareFirst", id).Get(ctx, nil); err != nil {
		return err
	}
	workflow.GetSignalChannel(ctx, bareEnd).Receive(ctx, nil)
	return workflow.ExecuteActivity(ctx, "BenchBareSecond", id).Get(ctx, nil)
}

func (f *Floor) first(_ context.Context, id string) error {
	now := time.Now()
	f.mu.Lock()
	ch := f.waiting[id]
	f.mu.Unlock()
	if ch != nil {
		select {
		case ch <- now:
		default:
		}
	}
	return nil
}

func (f *Floor) second(context.Context, string) error { return nil }

// start SignalWithStarts a bare workflow and returns when its first
// activity ran, measured from just before the call.
func (f *Floor) start(ctx context.Context, id string) (time.Duration, error) {
	ch := make(chan time.Time, 1)
	f.mu.Lock()
	f.waiting[id] = ch
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.waiting, id)
		f.mu.Unlock()
	}()

	begin := time.Now()
	_, err := f.c.SignalWithStartWorkflow(ctx, id, bareStart, id,
		client.StartWorkflowOptions{ID: id, TaskQueue: f.tq}, bareWorkflowName)
	if err != nil {
		return 0, fmt.Errorf("signal-with-start: %w", err)
	}
	select {
	case ran := <-ch:
		return ran.Sub(begin), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("waiting for the first activity: %w", ctx.Err())
	}
}

// FirstActivity measures SignalWithStart → first activity running, for
// rate workflows a second during d. It is the floor of ctmflow's
// call-start-ack → lead-visible figure.
func (f *Floor) FirstActivity(ctx context.Context, rate float64, d time.Duration) (Summary, int64) {
	var dist Dist
	var errs atomic.Int64
	var wg sync.WaitGroup
	ticker := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer ticker.Stop()
	begin := time.Now()
	for i := 0; time.Since(begin) < d && ctx.Err() == nil; i++ {
		id := fmt.Sprintf("%s-first-%d", f.tq, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			took, err := f.start(wctx, id)
			if err != nil {
				errs.Add(1)
				return
			}
			dist.Add(took)
			_ = f.c.SignalWorkflow(wctx, id, "", bareEnd, nil)
		}()
		select {
		case <-ticker.C:
		case <-ctx.Done():
		}
	}
	wg.Wait()
	return dist.Summary(), errs.Load()
}

// Lifecycles runs bare lifecycles back to back from concurrency clients
// for d, and returns how many completed: the engine's ceiling for
// ctmflow's lifecycles per second.
func (f *Floor) Lifecycles(
	ctx context.Context, concurrency int, d time.Duration,
) (completed, errs int64, elapsed time.Duration) {
	var done, failed, next atomic.Int64
	var wg sync.WaitGroup
	begin := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(begin) < d && ctx.Err() == nil {
				id := fmt.Sprintf("%s-life-%d", f.tq, next.Add(1))
				if err := f.lifecycle(ctx, id); err != nil {
					failed.Add(1)
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return done.Load(), failed.Load(), time.Since(begin)
}

func (f *Floor) lifecycle(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := f.start(ctx, id); err != nil {
		return err
	}
	if err := f.c.SignalWorkflow(ctx, id, "", bareEnd, nil); err != nil {
		return err
	}
	return f.c.GetWorkflow(ctx, id, "").Get(ctx, nil)
}

// EventCounts summarises history lengths (events per workflow run).
type EventCounts struct {
	N      int   `json:"n"`
	Min    int64 `json:"min"`
	Median int64 `json:"median"`
	Max    int64 `json:"max"`
}

// HistoryEvents reads the history length of the latest run of each
// workflow id. Given calls without late updates, that is the one run that
// took each call from start to end.
func HistoryEvents(ctx context.Context, c client.Client, ids []string) (EventCounts, error) {
	var counts []int64
	for _, id := range ids {
		d, err := c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			return EventCounts{}, fmt.Errorf("describing %s: %w", id, err)
		}
		counts = append(counts, d.WorkflowExecutionInfo.HistoryLength)
	}
	if len(counts) == 0 {
		return EventCounts{}, nil
	}
	slices.Sort(counts)
	return EventCounts{N: len(counts), Min: counts[0], Median: counts[len(counts)/2], Max: counts[len(counts)-1]}, nil
}

// Package worker runs ctmflow's Temporal worker: it registers the
// workflows and activities on the task queue and polls it.
package worker

import (
	"time"

	sdkclient "go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/ctmflow/ctmflow/activities"
	"github.com/ctmflow/ctmflow/triggers"
	"github.com/ctmflow/ctmflow/workflows"
)

// DefaultTaskQueue is the task queue ctmflow's workflows run on.
const DefaultTaskQueue = "ctmflow"

// Options configure the worker.
type Options struct {
	Client     sdkclient.Client
	TaskQueue  string
	Activities *activities.Activities
	// Sender, when set, runs the trigger delivery activities.
	Sender *triggers.Sender
	// MaxConcurrentActivities caps activities running at once. Default
	// 200.
	MaxConcurrentActivities int
	// MaxConcurrentWorkflowTasks caps workflow tasks running at once.
	// Default 200.
	MaxConcurrentWorkflowTasks int
	// StopTimeout is how long Stop waits for activities in flight.
	// Default 0: the SDK's own.
	StopTimeout time.Duration
}

// New returns a worker, not yet started.
func New(opts Options) sdkworker.Worker {
	if opts.TaskQueue == "" {
		opts.TaskQueue = DefaultTaskQueue
	}
	if opts.MaxConcurrentActivities <= 0 {
		opts.MaxConcurrentActivities = 200
	}
	if opts.MaxConcurrentWorkflowTasks <= 0 {
		opts.MaxConcurrentWorkflowTasks = 200
	}
	w := sdkworker.New(opts.Client, opts.TaskQueue, sdkworker.Options{
		MaxConcurrentActivityExecutionSize:      opts.MaxConcurrentActivities,
		MaxConcurrentLocalActivityExecutionSize: opts.MaxConcurrentActivities,
		MaxConcurrentWorkflowTaskExecutionSize:  opts.MaxConcurrentWorkflowTasks,
		// A workflow task that panics (a bug, or non-determinism after a
		// code change) is retried, not failed: the UI shows the failing
		// task, and the call resumes once fixed code is deployed.
		WorkflowPanicPolicy: sdkworker.BlockWorkflow,
		WorkerStopTimeout:   opts.StopTimeout,
	})
	RegisterWorkflows(w)
	w.RegisterActivity(opts.Activities)
	if opts.Sender != nil {
		w.RegisterActivity(opts.Sender)
	}
	return w
}

// RegisterWorkflows adds every workflow to r under its stable name. The
// replay tests use it to replay with exactly what the worker runs.
func RegisterWorkflows(r sdkworker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(workflows.CallWorkflow, workflow.RegisterOptions{Name: "CallWorkflow"})
	r.RegisterWorkflowWithOptions(workflows.MessageWorkflow, workflow.RegisterOptions{Name: "MessageWorkflow"})
	r.RegisterWorkflowWithOptions(workflows.TriggerWorkflow, workflow.RegisterOptions{Name: "TriggerWorkflow"})
}

// SetCacheSize bounds how many workflows a worker process keeps in memory
// between their tasks. Calls waiting for their end beyond it are evicted
// and replayed from history when their end arrives: memory stays bounded
// whatever the number of open calls. It applies process-wide and must be
// called before any worker starts.
func SetCacheSize(n int) {
	if n > 0 {
		sdkworker.SetStickyWorkflowCacheSize(n)
	}
}

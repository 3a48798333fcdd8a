//go:build !nodev

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/ctmflow/ctmflow/app"
	"github.com/ctmflow/ctmflow/bench"
	"github.com/ctmflow/ctmflow/config"
	"github.com/ctmflow/ctmflow/devserver"
	"github.com/ctmflow/ctmflow/engine"
	"github.com/ctmflow/ctmflow/logging"
	"github.com/ctmflow/ctmflow/workflows"
)

type benchFlags struct {
	scenarios   string
	rate        float64
	ackRate     float64
	duration    time.Duration
	concurrency int
	endAfter    time.Duration
	jsonOut     bool
	shards      int
	databaseURL string
	url         string
	token       string
	account     int64
	secret      string
	temporal    string
	waiting     int
	cacheSizes  []int
	workerBin   string
	cpuProfile  string
}

func newBenchCmd() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure webhook acks, lead latency and throughput beside the bare engine",
		Long: `Measure ctmflow as CTM loads it: signed call lifecycles (start, end,
duplicates, late updates) at a target rate or at saturation, timed from
the client — webhook ack, call-start ack → lead visible in the API,
call-end ack → lead updated — next to the bare Temporal engine measured on
the same server in the same run.

Without --url it runs an embedded stack in this process: a Temporal
server (SQLite file, --shards history shards), the webhook server and
the worker, on DATABASE_URL (or a temporary SQLite file). With --url it
drives a running ctmflow and needs --token, --account, --secret and
--temporal (for the floor and history counts).

Scenarios (comma-separated, default all but memory): floor, lifecycle,
saturation, ack, ack-down (embedded only: Temporal unreachable), and
memory (embedded only, run alone): park --waiting calls for each of
--cache-sizes on a real ` + "`ctmflow worker`" + ` subprocess and read its
resident memory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.scenarios, "scenarios", "floor,lifecycle,saturation,ack,ack-down", "scenarios to run")
	fl.Float64Var(&f.rate, "rate", 20, "calls started per second in the lifecycle and floor scenarios")
	fl.Float64Var(&f.ackRate, "ack-rate", 200, "deliveries per second in the ack scenarios")
	fl.DurationVar(&f.duration, "duration", 30*time.Second, "how long each scenario runs")
	fl.IntVar(&f.concurrency, "concurrency", 16, "back-to-back clients at saturation")
	fl.DurationVar(&f.endAfter, "end-after", time.Second, "how long a call rings after its lead is visible")
	fl.BoolVar(&f.jsonOut, "json", false, "print the report as JSON")
	fl.IntVar(&f.shards, "shards", 4, "history shards of the embedded server")
	fl.StringVar(&f.databaseURL, "database-url", os.Getenv("DATABASE_URL"),
		"CRM database of the embedded stack (default: temporary SQLite)")
	fl.StringVar(&f.url, "url", "", "base URL of a running ctmflow (default: embedded)")
	fl.StringVar(&f.token, "token", "", "API token of the running ctmflow")
	fl.Int64Var(&f.account, "account", 0, "CTM account whose secret is --secret")
	fl.StringVar(&f.secret, "secret", "", "webhook secret of --account")
	fl.StringVar(&f.temporal, "temporal", "127.0.0.1:7233", "Temporal frontend of the running ctmflow")
	fl.IntVar(&f.waiting, "waiting", 10000, "calls left waiting for their end in the memory scenario")
	fl.IntSliceVar(&f.cacheSizes, "cache-sizes", []int{10000, 1000},
		"WORKER_CACHE_SIZE values the memory scenario compares")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "",
		"write a CPU profile of this process (the whole embedded stack) to the file")
	fl.StringVar(&f.workerBin, "worker-bin", "", "ctmflow binary the memory scenario runs as worker "+
		"(default: this one; a -tags nodev build is what production runs)")
	return cmd
}

// benchReport is everything one bench run measured.
type benchReport struct {
	Machine    string                 `json:"machine"`
	Database   string                 `json:"database"`
	Floor      *floorReport           `json:"floor,omitempty"`
	Lifecycle  *bench.LifecycleReport `json:"lifecycle,omitempty"`
	Saturation *saturationReport      `json:"saturation,omitempty"`
	Ack        *bench.AckReport       `json:"ack,omitempty"`
	AckDown    *bench.AckReport       `json:"ack_temporal_down,omitempty"`
	Events     *bench.EventCounts     `json:"history_events_per_call,omitempty"`
	Memory     []memoryReport         `json:"worker_memory,omitempty"`
}

type memoryReport struct {
	CacheSize int          `json:"cache_size"`
	Waiting   int          `json:"waiting_calls"`
	Idle      bench.Memory `json:"idle"`
	Loaded    bench.Memory `json:"with_calls_waiting"`
}

type floorReport struct {
	FirstActivity bench.Summary `json:"signal_with_start_to_first_activity"`
	Errors        int64         `json:"errors"`
}

type saturationReport struct {
	Ours        bench.LifecycleReport `json:"ours"`
	BarePerSec  float64               `json:"bare_lifecycles_per_second"`
	BareErrors  int64                 `json:"bare_errors"`
	OursPerSec  float64               `json:"ours_lifecycles_per_second"`
	RatioToBare float64               `json:"ratio_to_bare"`
}

func runBench(ctx context.Context, f benchFlags, stdout, stderr io.Writer) error {
	want := map[string]bool{}
	for _, s := range strings.Split(f.scenarios, ",") {
		switch s = strings.TrimSpace(s); s {
		case "floor", "lifecycle", "saturation", "ack", "ack-down", "memory":
			want[s] = true
		default:
			return usage("unknown scenario %q", s)
		}
	}
	if want["memory"] && (len(want) > 1 || f.url != "") {
		return usage("the memory scenario runs alone, on the embedded stack")
	}
	if want["memory"] && (f.waiting < 1 || len(f.cacheSizes) == 0) {
		return usage("--waiting and --cache-sizes must be positive")
	}
	if f.rate <= 0 || f.ackRate <= 0 || f.duration <= 0 || f.concurrency < 1 {
		return usage("--rate, --ack-rate, --duration and --concurrency must be positive")
	}

	env, err := benchTarget(ctx, f, !want["memory"], stderr)
	if err != nil {
		return err
	}
	defer env.close()
	if f.cpuProfile != "" {
		out, err := os.Create(f.cpuProfile)
		if err != nil {
			return err
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if want["ack-down"] && env.down == nil {
		return usage("the ack-down scenario needs the embedded stack (no --url)")
	}

	rep := benchReport{
		Machine:  fmt.Sprintf("%d cores, %s/%s, %s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version()),
		Database: env.database,
	}
	progress := stderr
	say := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }

	if want["floor"] {
		floor, err := bench.StartFloor(env.temporal)
		if err != nil {
			return err
		}
		say("floor: bare SignalWithStart → first activity, %.0f/s for %s", f.rate, f.duration)
		first, errs := floor.FirstActivity(ctx, f.rate, f.duration)
		rep.Floor = &floorReport{FirstActivity: first, Errors: errs}
		floor.Stop()
	}
	if want["lifecycle"] {
		say("lifecycle: %.0f calls/s for %s, ringing %s", f.rate, f.duration, f.endAfter)
		l := bench.Lifecycles(ctx, env.target, bench.LifecycleOptions{
			Rate: f.rate, Duration: f.duration, EndAfter: f.endAfter,
			Duplicates: 0.1, LateUpdates: 0.1, Progress: progress,
		})
		rep.Lifecycle = &l
		ids := make([]string, 0, len(l.CallIDs))
		for _, id := range l.CallIDs {
			ids = append(ids, workflows.CallWorkflowID(env.target.AccountID, id))
		}
		if ev, err := bench.HistoryEvents(ctx, env.temporal, ids); err == nil {
			rep.Events = &ev
		} else {
			say("counting history events: %v", err)
		}
	}
	if want["saturation"] {
		floor, err := bench.StartFloor(env.temporal)
		if err != nil {
			return err
		}
		say("saturation: bare lifecycles, %d clients for %s", f.concurrency, f.duration)
		n, errs, took := floor.Lifecycles(ctx, f.concurrency, f.duration)
		floor.Stop()
		sat := &saturationReport{BarePerSec: float64(n) / took.Seconds(), BareErrors: errs}
		say("saturation: ctmflow lifecycles, %d clients for %s", f.concurrency, f.duration)
		sat.Ours = bench.Lifecycles(ctx, env.target, bench.LifecycleOptions{
			Concurrency: f.concurrency, Duration: f.duration, Duplicates: 0.1, LateUpdates: 0, Progress: progress,
		})
		sat.OursPerSec = sat.Ours.Throughput
		if sat.BarePerSec > 0 {
			sat.RatioToBare = sat.OursPerSec / sat.BarePerSec
		}
		rep.Saturation = sat
	}
	if want["ack"] {
		say("ack: %.0f deliveries/s for %s, Temporal up", f.ackRate, f.duration)
		a := bench.Acks(ctx, env.target, bench.AckOptions{Rate: f.ackRate, Duration: f.duration, Progress: progress})
		rep.Ack = &a
	}
	if want["ack-down"] {
		say("ack: %.0f deliveries/s for %s, Temporal unreachable", f.ackRate, f.duration)
		a := bench.Acks(ctx, env.down, bench.AckOptions{Rate: f.ackRate, Duration: f.duration, Progress: progress})
		rep.AckDown = &a
	}

	if want["memory"] {
		for i, size := range f.cacheSizes {
			say("memory: %d calls waiting, worker cache %d", f.waiting, size)
			m, err := measureWorker(ctx, env, f, size, int64(i+1)*10_000_000, stderr)
			if err != nil {
				return err
			}
			rep.Memory = append(rep.Memory, m)
		}
	}

	if f.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printBench(stdout, f, rep)
	return nil
}

func printBench(w io.Writer, f benchFlags, r benchReport) {
	fmt.Fprintf(w, "\nctmflow bench — %s — database %s\n\n", r.Machine, r.Database)
	if r.Floor != nil {
		fmt.Fprintf(w, "engine floor, SignalWithStart → first activity @ %.0f/s:\n  %s  errors %d\n",
			f.rate, r.Floor.FirstActivity, r.Floor.Errors)
	}
	if l := r.Lifecycle; l != nil {
		fmt.Fprintf(w, "lifecycles @ %.0f calls/s: started %d, completed %d, errors %d\n",
			f.rate, l.Started, l.Completed, l.Errors)
		fmt.Fprintf(w, "  webhook ack               %s\n", l.Ack)
		fmt.Fprintf(w, "  call-start ack → lead     %s\n", l.StartToLead)
		fmt.Fprintf(w, "  call-end ack → updated    %s\n", l.EndToUpdated)
		if r.Floor != nil && r.Floor.FirstActivity.P99 > 0 {
			fmt.Fprintf(w, "  lead p50/p99 ÷ floor      %.2f / %.2f\n",
				ratio(l.StartToLead.P50, r.Floor.FirstActivity.P50),
				ratio(l.StartToLead.P99, r.Floor.FirstActivity.P99))
		}
		for _, e := range l.FirstErrors {
			fmt.Fprintf(w, "  error: %s\n", e)
		}
	}
	if r.Events != nil {
		fmt.Fprintf(w, "history events per call (start+end run): min %d, median %d, max %d (n=%d)\n",
			r.Events.Min, r.Events.Median, r.Events.Max, r.Events.N)
	}
	if s := r.Saturation; s != nil {
		fmt.Fprintf(w, "saturation, %d clients: bare %.1f lifecycles/s, "+
			"ctmflow %.1f lifecycles/s (%.2f× bare), errors %d+%d\n",
			f.concurrency, s.BarePerSec, s.OursPerSec, s.RatioToBare, s.BareErrors, s.Ours.Errors)
		fmt.Fprintf(w, "  ctmflow call-start ack → lead  %s\n", s.Ours.StartToLead)
	}
	if a := r.Ack; a != nil {
		fmt.Fprintf(w, "ack @ %.0f/s, Temporal up:   %s  (achieved %.0f/s, errors %d)\n", f.ackRate, a.Ack, a.Rate, a.Errors)
	}
	for _, m := range r.Memory {
		fmt.Fprintf(w, "worker RSS, cache %d: idle %.0f MiB, with %d calls waiting %.0f MiB (peak %.0f MiB)\n",
			m.CacheSize, mib(m.Idle.RSS), m.Waiting, mib(m.Loaded.RSS), mib(m.Loaded.Peak))
	}
	if a := r.AckDown; a != nil {
		fmt.Fprintf(w, "ack @ %.0f/s, Temporal down: %s  (achieved %.0f/s, errors %d)\n", f.ackRate, a.Ack, a.Rate, a.Errors)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// measureWorker runs a real `ctmflow worker` with the given cache size,
// parks f.waiting calls on it and reads its resident memory.
func measureWorker(
	ctx context.Context, env *benchEnv, f benchFlags,
	cacheSize int, firstCallID int64, stderr io.Writer,
) (memoryReport, error) {
	bin := f.workerBin
	if bin == "" {
		self, err := os.Executable()
		if err != nil {
			return memoryReport{}, err
		}
		bin = self
	}
	cmd := exec.CommandContext(ctx, bin, "worker")
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+env.dsn,
		"TEMPORAL_ADDRESS="+env.temporalAddr,
		"TEMPORAL_TASK_QUEUE="+env.taskQueue,
		"WORKER_CACHE_SIZE="+strconv.Itoa(cacheSize),
		"LOG_LEVEL=warn", "LOG_FORMAT=text")
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return memoryReport{}, fmt.Errorf("starting worker: %w", err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()

	// Let the worker connect and settle before the idle reading.
	time.Sleep(3 * time.Second)
	idle, err := bench.ProcessMemory(cmd.Process.Pid)
	if err != nil {
		return memoryReport{}, err
	}
	parked, err := bench.Park(ctx, env.target, env.temporal, f.waiting, f.ackRate, firstCallID, stderr)
	if err != nil {
		return memoryReport{}, err
	}
	loaded, err := bench.ProcessMemory(cmd.Process.Pid)
	if err != nil {
		return memoryReport{}, err
	}
	return memoryReport{CacheSize: cacheSize, Waiting: int(parked), Idle: idle, Loaded: loaded}, nil
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// benchEnv is what a bench run drives.
type benchEnv struct {
	target   *bench.Target
	down     *bench.Target
	temporal client.Client
	database string
	close    func()

	// Of an embedded stack, for a worker started apart.
	dsn          string
	temporalAddr string
	taskQueue    string
}

func benchTarget(ctx context.Context, f benchFlags, withWorker bool, stderr io.Writer) (*benchEnv, error) {
	if f.url != "" {
		if f.token == "" || f.account <= 0 || f.secret == "" {
			return nil, usage("--url needs --token, --account and --secret")
		}
		tc, err := engine.Dial(ctx, engine.Options{HostPort: f.temporal})
		if err != nil {
			return nil, withCode(ExitUnavailable, err)
		}
		return &benchEnv{
			target: &bench.Target{
				URL: strings.TrimRight(f.url, "/"), Token: f.token, AccountID: f.account, Secret: f.secret,
			},
			temporal: tc,
			database: "as configured on " + f.url,
			close:    tc.Close,
		}, nil
	}
	return embeddedBench(ctx, f, withWorker, stderr)
}

// embeddedBench starts a whole stack in this process, plus a second HTTP
// server on the same database whose Temporal is unreachable.
func embeddedBench(ctx context.Context, f benchFlags, withWorker bool, stderr io.Writer) (*benchEnv, error) {
	dir, err := os.MkdirTemp("", "ctmflow-bench-")
	if err != nil {
		return nil, err
	}
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		_ = os.RemoveAll(dir)
	}
	fail := func(err error) (*benchEnv, error) {
		cleanup()
		return nil, err
	}

	srv, err := devserver.Start(ctx, devserver.Options{DBPath: filepath.Join(dir, "temporal.db"), Shards: f.shards})
	if err != nil {
		return fail(withCode(ExitUnavailable, err))
	}
	closers = append(closers, func() { _ = srv.Stop() })

	dsn := f.databaseURL
	if dsn == "" {
		dsn = "sqlite:" + filepath.Join(dir, "ctmflow.db")
	}
	secret, token := "bench-secret-"+randomHex(8), "bench-token-"+randomHex(8)
	env := map[string]string{
		"DATABASE_URL":        dsn,
		"TEMPORAL_ADDRESS":    srv.HostPort(),
		"CTM_WEBHOOK_SECRETS": "77=" + secret,
		"API_TOKEN":           token,
		"HTTP_ADDR":           "127.0.0.1:0",
		"LOG_LEVEL":           "error",
		"TEMPORAL_TASK_QUEUE": "ctmflow-bench",
	}
	cfg, err := config.Load(config.RoleWebhook, env)
	if err != nil {
		return fail(withCode(ExitConfig, err))
	}
	log, err := logging.New(stderr, "text", "error")
	if err != nil {
		return fail(err)
	}
	tc, err := app.DialTemporal(ctx, cfg, log, nil, false)
	if err != nil {
		return fail(withCode(ExitUnavailable, err))
	}
	closers = append(closers, tc.Close)
	if err := engine.EnsureSearchAttributes(ctx, tc, cfg.TemporalNamespace); err != nil {
		return fail(err)
	}
	st, err := app.OpenStore(ctx, cfg)
	if err != nil {
		return fail(withCode(ExitUnavailable, err))
	}
	closers = append(closers, func() { _ = st.Close() })
	if err := st.Migrate(ctx); err != nil {
		return fail(err)
	}

	d := app.Deps{Config: cfg, Log: log, Store: st, Temporal: tc}
	if withWorker {
		w := app.NewWorker(d)
		if err := w.Start(); err != nil {
			return fail(err)
		}
		closers = append(closers, w.Stop)
	}
	up, err := serveInBackground(d, &closers)
	if err != nil {
		return fail(err)
	}

	// The same webhook server with Temporal unreachable: nothing listens
	// on port 1, and the lazy client connects only when the relay tries.
	downCfg := *cfg
	downCfg.TemporalAddress = "127.0.0.1:1"
	dc, err := app.DialTemporal(ctx, &downCfg, log, nil, true)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, dc.Close)
	down, err := serveInBackground(app.Deps{Config: &downCfg, Log: log, Store: st, Temporal: dc}, &closers)
	if err != nil {
		return fail(err)
	}

	mk := func(url string) *bench.Target {
		return &bench.Target{URL: url, Token: token, AccountID: 77, Secret: secret}
	}
	return &benchEnv{
		target:   mk(up),
		down:     mk(down),
		temporal: tc,
		database: strings.SplitN(dsn, ":", 2)[0],
		close:    cleanup,

		dsn:          dsn,
		temporalAddr: srv.HostPort(),
		taskQueue:    cfg.TaskQueue,
	}, nil
}

// serveInBackground runs the webhook server and relay until the bench
// ends, and returns its base URL.
func serveInBackground(d app.Deps, closers *[]func()) (string, error) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- app.ServeWebhook(ctx, d, "127.0.0.1:0", ready) }()
	select {
	case addr := <-ready:
		*closers = append(*closers, func() {
			cancel()
			<-done
		})
		return "http://" + addr, nil
	case err := <-done:
		cancel()
		if err == nil {
			err = errors.New("server stopped before listening")
		}
		return "", err
	}
}

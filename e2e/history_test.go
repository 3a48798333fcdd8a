package e2e

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	sdkworker "go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/teststack"
	"github.com/ctmflow/ctmflow/worker"
	"github.com/ctmflow/ctmflow/workflows"
)

var updateHistories = flag.Bool("update-histories", false,
	"write the recorded histories to workflows/testdata as the current version's baseline")

// historyVersion names the current workflow code version. Bump it with a
// workflow change that needs versioning, tag the runs of the new paths
// with it, and keep the older files: workflows/replay_test.go replays all
// of them. -update-histories writes only the current version's files, so
// a baseline recorded by older code is never overwritten.
//
//   - v1: the call lifecycle.
//   - v2: a timed-out end wait asks CTM's API (workflows.endFromAPI).
//   - v3: end steps run as local activities first (CallInput.QuickSteps),
//     which changes every call's commands: every path is recorded again.
const historyVersion = "v3"

// TestRecordedHistoriesReplay runs each kind of call through the real
// server, then replays the histories the server stored against today's
// workflow code. A non-deterministic change fails here before it ships;
// with -update-histories the histories become the replay baseline.
func TestRecordedHistoriesReplay(t *testing.T) {
	account := stackAccount()
	ctmAPI, env := standIn(t, account, map[string]string{"CALL_END_RECHECK": "1s"})
	s := teststack.Start(t, teststack.Options{
		EndTimeout: 2 * time.Second, StepRetryTimeout: 2 * time.Second, Env: env, AccountID: account,
	})
	type run struct{ version, name, wfID, runID string }
	var runs []run
	// latest names the newest run of wfID, once it has closed.
	latest := func(version, name, wfID string) run {
		waitClosed(t, s, wfID)
		d, err := s.Client.DescribeWorkflowExecution(context.Background(), wfID, "")
		require.NoError(t, err)
		return run{version, name, wfID, d.WorkflowExecutionInfo.Execution.RunId}
	}

	phone := "+12395550191"
	post := func(path string, body []byte) {
		status, _ := s.Post(t, path, body)
		require.Less(t, status, 300)
	}

	post("call-start", s.Sample(8001, phone).StartBody())
	waitCallStage(t, s, phone, 8001, "started")
	post("call-end", s.Sample(8001, phone).EndBody())
	wf := workflows.CallWorkflowID(s.AccountID, 8001)
	first := latest(historyVersion, "call_start_then_end", wf)
	runs = append(runs, first)

	post("call-update", s.Sample(8001, phone).UpdateBody())
	waitCallRated(t, s, phone, 8001)
	teststack.Eventually(t, 15*time.Second, "the late update's own run", func() bool {
		return latest("", "", wf).runID != first.runID
	})
	runs = append(runs, latest(historyVersion, "call_late_update", wf))

	post("call-end", s.Sample(8002, phone).EndBody())
	runs = append(runs, latest(historyVersion, "call_end_first", workflows.CallWorkflowID(s.AccountID, 8002)))

	post("text-message", s.Sample(8004, phone).TextBody())
	runs = append(runs, latest(historyVersion, "text_message", workflows.MessageWorkflowID(s.AccountID, 8004)))

	// The end never comes; CTM's API does not know the call.
	post("call-start", s.Sample(8003, phone).StartBody())
	waitCallStage(t, s, phone, 8003, "end_missing")
	runs = append(runs, latest(historyVersion, "call_end_unknown_to_ctm", workflows.CallWorkflowID(s.AccountID, 8003)))

	// The end never comes; CTM's API has it.
	ctmAPI.PutCall(s.Sample(8005, phone).EndBody())
	post("call-start", s.Sample(8005, phone).StartBody())
	waitCallStage(t, s, phone, 8005, "ended")
	runs = append(runs, latest(historyVersion, "call_end_from_api", workflows.CallWorkflowID(s.AccountID, 8005)))

	// CTM's API says the call is in progress, then that it ended.
	ctmAPI.PutCallSequence(s.Sample(8006, phone).StartBody(), s.Sample(8006, phone).EndBody())
	post("call-start", s.Sample(8006, phone).StartBody())
	waitCallStage(t, s, phone, 8006, "ended")
	runs = append(runs, latest(historyVersion, "call_end_rechecked", workflows.CallWorkflowID(s.AccountID, 8006)))

	// A step that parks for real, and the ops signal that retries it.
	post("call-start", s.Sample(8007, phone).StartBody())
	waitCallStage(t, s, phone, 8007, "started")
	repair := testenv.FailUpdates(t, s.Config.DatabaseURL, "calls", "transcript", transcriptFault)
	post("call-end", s.Sample(8007, phone).EndBody())
	parked := workflows.CallWorkflowID(s.AccountID, 8007)
	teststack.Eventually(t, 30*time.Second, "the parked step", func() bool {
		st, err := queryState(s, parked)
		return err == nil && len(st.Parked) == 1
	})
	repair()
	require.NoError(t, s.Client.SignalWorkflow(context.Background(), parked, "", workflows.SignalOps,
		workflows.OpsDecision{Action: workflows.OpsRetry}))
	runs = append(runs, latest(historyVersion, "call_ops_retry", parked))

	scratch := t.TempDir()
	for _, r := range runs {
		t.Run(r.version+"_"+r.name, func(t *testing.T) {
			dir := scratch
			if *updateHistories && r.version == historyVersion {
				dir = filepath.Join("..", "workflows", "testdata")
			}
			path := filepath.Join(dir, r.version+"_"+r.name+".json")
			writeHistory(t, s, r.wfID, r.runID, path)

			replayer := sdkworker.NewWorkflowReplayer()
			worker.RegisterWorkflows(replayer)
			require.NoError(t, replayer.ReplayWorkflowHistoryFromJSONFile(nil, path))
		})
	}
}

// writeHistory saves one run's history as JSON.
func writeHistory(t *testing.T, s *teststack.Stack, wfID, runID, path string) {
	t.Helper()
	ctx := context.Background()
	iter := s.Client.GetWorkflowHistory(ctx, wfID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var h historypb.History
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		h.Events = append(h.Events, ev)
	}
	require.NotEmpty(t, h.Events)
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(&h)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, append(b, '\n'), 0o644))
}

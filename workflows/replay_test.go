package workflows_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/ctmflow/ctmflow/worker"
)

// TestReplayRecordedHistories replays every recorded history, of every
// workflow version still in use, against today's code. Changing a workflow
// in a way that breaks a run in flight fails here; such a change needs
// workflow.GetVersion (see README, "Changing a workflow"). The histories
// come from the real server: go test ./e2e -run TestRecordedHistoriesReplay
// -args -update-histories.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no recorded histories in testdata")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			replayer := sdkworker.NewWorkflowReplayer()
			worker.RegisterWorkflows(replayer)
			require.NoError(t, replayer.ReplayWorkflowHistoryFromJSONFile(nil, f))
		})
	}
}

// TestRecordedHistoriesCoverEveryPath checks the baseline itself: each
// file names the workflow version that recorded it, and together they go
// down every path a change could break, so that no such change replays
// clean by accident.
func TestRecordedHistoriesCoverEveryPath(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(t, err)
	named := regexp.MustCompile(`^v[0-9]+_[a-z0-9_]+\.json$`)
	var all strings.Builder
	for _, f := range files {
		assert.Regexp(t, named, filepath.Base(f), "histories are named vN_what.json")
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		all.Write(b)
	}
	paths := map[string][]string{
		"a call":                   {`"name": "CallWorkflow"`},
		"a text message":           {`"name": "MessageWorkflow"`},
		"a delivery":               {`"signalName": "ctm-delivery"`},
		"the end timer firing":     {`"EVENT_TYPE_TIMER_FIRED"`},
		"an ops decision":          {`"signalName": "ops"`},
		"a step that ran out":      {`"EVENT_TYPE_ACTIVITY_TASK_FAILED"`, `"EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT"`},
		"the first step, locally":  {`"EVENT_TYPE_MARKER_RECORDED"`},
		"search attributes change": {`"EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"`},
	}
	for what, markers := range paths {
		found := false
		for _, m := range markers {
			found = found || strings.Contains(all.String(), m)
		}
		assert.True(t, found, "no recorded history has %s", what)
	}
}

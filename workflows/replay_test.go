package workflows_test

import (
	"path/filepath"
	"testing"

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

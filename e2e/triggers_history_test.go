package e2e

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/ctmflow/ctmflow/teststack"
	"github.com/ctmflow/ctmflow/worker"
)

// replayHistory replays a closed trigger delivery run against today's
// workflow code. With -update-histories it also becomes the replay
// baseline, workflows/testdata/<version>_<name>.json:
//
//	go test ./e2e -run 'TestTriggerBehaviours|TestDestinationFailing' -args -update-histories
func replayHistory(t *testing.T, s *teststack.Stack, wfID, name string) {
	t.Helper()
	dir := t.TempDir()
	if *updateHistories {
		dir = filepath.Join("..", "workflows", "testdata")
	}
	path := filepath.Join(dir, historyVersion+"_"+name+".json")
	writeHistory(t, s, wfID, "", path)

	replayer := sdkworker.NewWorkflowReplayer()
	worker.RegisterWorkflows(replayer)
	require.NoError(t, replayer.ReplayWorkflowHistoryFromJSONFile(nil, path),
		"the run replays against the current workflow code")
}

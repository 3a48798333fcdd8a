package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/api"
	"github.com/ctmflow/ctmflow/cli"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/teststack"
	"github.com/ctmflow/ctmflow/workflows"
)

// transcriptFault is what the failing database says; it reaches the
// parked step's error, so it must read like a real cause.
const transcriptFault = "transcript column locked by a CRM migration"

// runCLI runs a ctmflow command in-process against the stack's Temporal.
func runCLI(t *testing.T, s *teststack.Stack, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Setenv("TEMPORAL_ADDRESS", s.Config.TemporalAddress)
	t.Setenv("TEMPORAL_NAMESPACE", s.Config.TemporalNamespace)
	var out, errOut bytes.Buffer
	code = cli.Execute(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// parkTranscript runs a call whose transcript cannot be written: its
// "attach transcript" step fails for real in the database until its
// retries run out, and parks. It returns the call's workflow id and the
// fault's repair.
func parkTranscript(
	t *testing.T, s *teststack.Stack, dbURL string, callID int64, phone string,
) (string, func()) {
	t.Helper()
	sample := s.Sample(callID, phone)
	status, _ := s.Post(t, "call-start", sample.StartBody())
	require.Equal(t, http.StatusAccepted, status)
	waitCallStage(t, s, phone, callID, models.StageStarted)

	repair := testenv.FailUpdates(t, dbURL, "calls", "transcript", transcriptFault)
	status, _ = s.Post(t, "call-end", sample.EndBody())
	require.Equal(t, http.StatusAccepted, status)

	wfID := workflows.CallWorkflowID(s.AccountID, callID)
	teststack.Eventually(t, 30*time.Second, "the transcript step parked", func() bool {
		st, err := queryState(s, wfID)
		return err == nil && len(st.Parked) == 1
	})
	return wfID, repair
}

func queryState(s *teststack.Stack, wfID string) (workflows.State, error) {
	var st workflows.State
	v, err := s.Client.QueryWorkflow(context.Background(), wfID, "", workflows.QueryState)
	if err != nil {
		return st, err
	}
	return st, v.Get(&st)
}

func TestOpsRetryAfterTheCauseIsFixed(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := teststack.Start(t, teststack.Options{DatabaseURL: db.URL, StepRetryTimeout: 2 * time.Second})
			phone := "+12395550184"
			wfID, repair := parkTranscript(t, s, db.URL, 7201, phone)

			// The other end steps went on; the call waits only for ops.
			lead, call := waitCall(t, s, phone, 7201, "the other end steps",
				func(c *api.Call) bool { return c.Stage == models.StageEnded && c.RecordingURL != "" })
			assert.Empty(t, call.Transcript)
			st, err := queryState(s, wfID)
			require.NoError(t, err)
			assert.Equal(t, workflows.WaitingForOps, st.WaitingFor)
			assert.Equal(t, "attach transcript", st.Parked[0].Step)
			assert.Contains(t, st.Parked[0].Error, transcriptFault)
			assert.True(t, needsAttention(t, s, wfID))

			var out string
			teststack.Eventually(t, 15*time.Second, "the call in ops list", func() bool {
				code, stdout, stderr := runCLI(t, s, "ops", "list")
				require.Equal(t, 0, code, stderr)
				out = stdout
				return strings.Contains(stdout, wfID)
			})
			line := lineWith(out, wfID)
			assert.Contains(t, line, "attach transcript")
			assert.Contains(t, line, transcriptFault)
			assert.Contains(t, line, fmt.Sprint(lead.ID))

			repair()
			code, stdout, stderr := runCLI(t, s, "ops", "retry", fmt.Sprintf("%d/%d", s.AccountID, 7201))
			require.Equal(t, 0, code, stderr)
			assert.Contains(t, stdout, `retry "attach transcript"`)

			waitClosed(t, s, wfID)
			waitCall(t, s, phone, 7201, "the transcript after the retry",
				func(c *api.Call) bool { return c.Transcript != "" })
			assert.False(t, needsAttention(t, s, wfID), "needs-attention is cleared")

			code, _, stderr = runCLI(t, s, "ops", "retry", wfID)
			assert.Equal(t, cli.ExitFailure, code)
			assert.Contains(t, stderr, "is completed")
		})
	}
}

func TestOpsSkipAStepThatCannotSucceed(t *testing.T) {
	dbURL := testenv.SQLiteURL(t)
	s := teststack.Start(t, teststack.Options{DatabaseURL: dbURL, StepRetryTimeout: 2 * time.Second})
	phone := "+12395550185"
	wfID, _ := parkTranscript(t, s, dbURL, 7202, phone)

	t.Run("a step that is not parked", func(t *testing.T) {
		code, _, stderr := runCLI(t, s, "ops", "skip", wfID, "--step", "attach recording")
		assert.Equal(t, cli.ExitFailure, code)
		assert.Contains(t, stderr, `no parked step "attach recording"`)
		assert.Contains(t, stderr, "parked: attach transcript")
	})

	code, stdout, stderr := runCLI(t, s, "ops", "skip", wfID, "--step", "Attach Transcript")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, `skip "attach transcript"`)

	// The fault is never repaired: the call completes without it.
	waitClosed(t, s, wfID)
	_, call := waitCall(t, s, phone, 7202, "the ended call", func(c *api.Call) bool { return true })
	assert.Equal(t, models.StageEnded, call.Stage)
	assert.Empty(t, call.Transcript)
	assert.False(t, needsAttention(t, s, wfID))
}

func TestOpsCommandErrors(t *testing.T) {
	s := teststack.Start(t, teststack.Options{})
	status, _ := s.Post(t, "call-start", s.Sample(7203, "+12395550186").StartBody())
	require.Equal(t, http.StatusAccepted, status)
	waitCallStage(t, s, "+12395550186", 7203, models.StageStarted)
	waiting := workflows.CallWorkflowID(s.AccountID, 7203)

	cases := []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"no CALL", nil, []string{"ops", "retry"}, cli.ExitUsage, "accepts 1 arg"},
		{"a CALL that is neither form", nil, []string{"ops", "retry", "call-7"}, cli.ExitUsage,
			"CALL must be a workflow id"},
		{"a bad limit", nil, []string{"ops", "list", "--limit", "0"}, cli.ExitUsage, "--limit"},
		{"a bad TEMPORAL_ADDRESS", map[string]string{"TEMPORAL_ADDRESS": "nowhere"},
			[]string{"ops", "list"}, cli.ExitConfig, "TEMPORAL_ADDRESS"},
		{"temporal down", map[string]string{"TEMPORAL_ADDRESS": "127.0.0.1:1"},
			[]string{"ops", "list"}, cli.ExitUnavailable, "127.0.0.1:1"},
		{"no such call", nil, []string{"ops", "retry", fmt.Sprintf("%d/999999", s.AccountID)},
			cli.ExitFailure, "no such workflow"},
		{"a call with nothing parked", nil, []string{"ops", "skip", waiting}, cli.ExitFailure,
			"nothing parked on " + waiting + " (stage started, waiting for call end)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errOut bytes.Buffer
			if tc.env == nil {
				t.Setenv("TEMPORAL_ADDRESS", s.Config.TemporalAddress)
			}
			t.Setenv("TEMPORAL_NAMESPACE", s.Config.TemporalNamespace)
			code := cli.Execute(tc.args, &out, &errOut)
			assert.Equal(t, tc.wantCode, code, "stderr: %s", errOut.String())
			assert.Contains(t, errOut.String(), tc.wantStderr)
		})
	}
}

func needsAttention(t *testing.T, s *teststack.Stack, wfID string) bool {
	t.Helper()
	d, err := s.Client.DescribeWorkflowExecution(context.Background(), wfID, "")
	require.NoError(t, err)
	p, ok := d.WorkflowExecutionInfo.GetSearchAttributes().GetIndexedFields()["CtmNeedsAttention"]
	if !ok {
		return false
	}
	return string(p.GetData()) == "true"
}

func lineWith(text, needle string) string {
	for line := range strings.SplitSeq(text, "\n") {
		if strings.Contains(line, needle) {
			return line
		}
	}
	return ""
}

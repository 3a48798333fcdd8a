package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	sdkpb "go.temporal.io/api/sdk/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ctmflow/ctmflow/api"
	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/devserver"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/teststack"
	"github.com/ctmflow/ctmflow/workflows"
)

// The caller of TestNoPHIInTemporalStorage, in every format CTM or a
// person might write the number.
var (
	phiPhone   = "+13055550199"
	phiFormats = []string{"+13055550199", "13055550199", "3055550199", "(305) 555-0199",
		"305-555-0199", "305.555.0199", "555-0199"}
	phiName     = "Marisol Quintanilla"
	phiSentence = "calling about inpatient treatment for my brother"
)

// TestNoPHIInTemporalStorage drives calls down every path (start, end,
// late update, text, end never arriving, end fetched from CTM's API, a
// parked step retried by ops)
// through a Temporal server that keeps its state in a file, then reads
// everything the server stored: every row of every table of its SQLite
// database, history and visibility alike, and the raw bytes of the
// database and its write-ahead log. The caller's number, name and words
// appear nowhere. Known ids do, which shows the scan reads what it should.
func TestNoPHIInTemporalStorage(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "temporal.db")
	srv := teststack.StartTemporal(t, devserver.Options{DBPath: dbPath})
	crm := testenv.SQLiteURL(t)
	account := stackAccount()
	ctmAPI, env := standIn(t, account, nil)
	s := teststack.Start(t, teststack.Options{
		Temporal: srv, DatabaseURL: crm, Env: env, AccountID: account,
		EndTimeout: 3 * time.Second, StepRetryTimeout: 2 * time.Second,
	})
	post := func(path string, body []byte) {
		t.Helper()
		status, answer := s.Post(t, path, body)
		require.Less(t, status, 300, "%s: %v", path, answer)
	}
	caller := func(callID int64) ctm.Sample {
		sample := s.Sample(callID, phiPhone)
		sample.Name = phiName
		return sample
	}

	// A whole call, then a late rating in a second run.
	post("call-start", caller(9001).StartBody())
	post("call-end", caller(9001).EndBody())
	waitClosed(t, s, workflows.CallWorkflowID(s.AccountID, 9001))
	post("call-update", caller(9001).UpdateBody())
	waitCallRated(t, s, phiPhone, 9001)

	// A text from the caller, written the old way.
	text := s.Sample(9002, "(305) 555-0199")
	text.Name = phiName
	post("text-message", text.TextBody())

	// A call whose end never comes, and one whose end CTM's API has.
	post("call-start", caller(9003).StartBody())
	waitCallStage(t, s, phiPhone, 9003, models.StageEndMissing)
	ctmAPI.PutCall(caller(9005).EndBody())
	post("call-start", caller(9005).StartBody())
	waitCall(t, s, phiPhone, 9005, "the end from CTM's API",
		func(c *api.Call) bool { return c.Stage == models.StageEnded && c.Transcript != "" })

	// A call whose transcript step parks, and ops retry it.
	post("call-start", caller(9004).StartBody())
	waitCallStage(t, s, phiPhone, 9004, models.StageStarted)
	repair := testenv.FailUpdates(t, crm, "calls", "transcript", transcriptFault)
	post("call-end", caller(9004).EndBody())
	wf := workflows.CallWorkflowID(s.AccountID, 9004)
	teststack.Eventually(t, 30*time.Second, "the parked step", func() bool {
		st, err := queryState(s, wf)
		return err == nil && len(st.Parked) == 1
	})
	repair()
	code, _, stderr := runCLI(t, s, "ops", "retry", wf)
	require.Equal(t, 0, code, stderr)
	waitCall(t, s, phiPhone, 9004, "the retried transcript",
		func(c *api.Call) bool { return c.Transcript != "" })

	// Two runs of 9001, one each of 9002 to 9005.
	var runs []*workflowpb.WorkflowExecutionInfo
	teststack.Eventually(t, 15*time.Second, "every run visible", func() bool {
		runs = listRuns(t, s)
		return len(runs) == 6
	})
	for _, r := range runs {
		waitClosed(t, s, r.GetExecution().GetWorkflowId())
	}

	t.Run("api", func(t *testing.T) {
		for _, r := range runs {
			scanAPI(t, s, r.GetExecution().GetWorkflowId(), r.GetExecution().GetRunId())
		}
	})
	dbs := []string{dbPath, devserver.VisibilityPath(dbPath)}
	t.Run("raw files", func(t *testing.T) {
		var files []byte
		for _, db := range dbs {
			wal, err := os.ReadFile(db + "-wal")
			require.NoError(t, err, "the server writes ahead")
			main, err := os.ReadFile(db)
			require.NoError(t, err)
			files = append(append(files, main...), wal...)
		}
		assertNoPHI(t, "the database files", files)
		assert.Contains(t, string(files), "CTM call 9004 · account", "the scan sees summaries")
	})
	t.Run("every table", func(t *testing.T) {
		history, visibility := dumpTables(t, dbs[0]), dumpTables(t, dbs[1])
		require.Contains(t, history, "history_node")
		require.Contains(t, visibility, "executions_visibility")
		for db, tables := range map[string]map[string][]byte{"history": history, "visibility": visibility} {
			for name, data := range tables {
				assertNoPHI(t, db+" table "+name, data)
			}
		}
		assert.Contains(t, string(history["history_node"]), "CTM call 9001 · account",
			"the scan sees history payloads")
		assert.Contains(t, string(visibility["executions_visibility"]), "Google Ads",
			"the scan sees search attributes")
	})
}

// phiNeedles is what must never be stored: the caller's number in every
// format, name and words, the recording link and the text's body.
func phiNeedles() []string {
	out := append([]string{}, phiFormats...)
	return append(out, phiName, "Quintanilla", phiSentence, "benefits check",
		"calltrackingmetrics.com", "/recording", "is there a bed available")
}

func assertNoPHI(t *testing.T, where string, data []byte) {
	t.Helper()
	for _, needle := range phiNeedles() {
		if i := bytes.Index(data, []byte(needle)); i >= 0 {
			lo, hi := max(0, i-60), min(len(data), i+len(needle)+60)
			t.Errorf("%s holds %q: …%q…", where, needle, data[lo:hi])
		}
	}
}

// scanAPI reads what the API shows of one run: its description (search
// attributes, memo, summary and details), its history, its current
// details and its state.
func scanAPI(t *testing.T, s *teststack.Stack, wfID, runID string) {
	t.Helper()
	ctx := context.Background()
	where := wfID + "/" + runID
	desc, err := s.Client.DescribeWorkflowExecution(ctx, wfID, runID)
	require.NoError(t, err)
	raw, err := proto.Marshal(desc)
	require.NoError(t, err)
	assertNoPHI(t, where+" description", raw)
	summary := desc.GetExecutionConfig().GetUserMetadata().GetSummary()
	assert.NotEmpty(t, summary.GetData(), "%s has a summary", where)

	iter := s.Client.GetWorkflowHistory(ctx, wfID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		raw, err := proto.Marshal(ev)
		require.NoError(t, err)
		assertNoPHI(t, fmt.Sprintf("%s event %d", where, ev.GetEventId()), raw)
	}

	v, err := s.Client.QueryWorkflow(ctx, wfID, runID, "__temporal_workflow_metadata")
	require.NoError(t, err)
	var md sdkpb.WorkflowMetadata
	require.NoError(t, v.Get(&md))
	assertNoPHI(t, where+" current details", []byte(md.GetCurrentDetails()))
	assert.Contains(t, md.GetCurrentDetails(), "**Stage**")

	v, err = s.Client.QueryWorkflow(ctx, wfID, runID, workflows.QueryState)
	require.NoError(t, err)
	var st workflows.State
	require.NoError(t, v.Get(&st))
	assertNoPHI(t, where+" state", fmt.Appendf(nil, "%+v", st))
}

func listRuns(t *testing.T, s *teststack.Stack) []*workflowpb.WorkflowExecutionInfo {
	t.Helper()
	resp, err := s.Client.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf("CtmAccountId = %d", s.AccountID),
	})
	require.NoError(t, err)
	return resp.GetExecutions()
}

// dumpTables reads every row of every table of the SQLite database at
// path, each table's values concatenated.
func dumpTables(t *testing.T, path string) map[string][]byte {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	require.NoError(t, err)
	defer db.Close()

	var names []string
	rows, err := db.Query("SELECT name FROM sqlite_master WHERE type = 'table'")
	require.NoError(t, err)
	for rows.Next() {
		var name string
		require.NoError(t, rows.Scan(&name))
		names = append(names, name)
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())

	out := map[string][]byte{}
	for _, name := range names {
		rows, err := db.Query(fmt.Sprintf("SELECT * FROM %q", name))
		require.NoError(t, err, name)
		cols, err := rows.Columns()
		require.NoError(t, err)
		var buf bytes.Buffer
		for rows.Next() {
			values := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range values {
				ptrs[i] = &values[i]
			}
			require.NoError(t, rows.Scan(ptrs...))
			for _, v := range values {
				switch v := v.(type) {
				case []byte:
					buf.Write(v)
				case string:
					buf.WriteString(v)
				default:
					fmt.Fprint(&buf, v)
				}
				buf.WriteByte(0)
			}
		}
		require.NoError(t, rows.Err())
		require.NoError(t, rows.Close())
		out[name] = buf.Bytes()
	}
	return out
}

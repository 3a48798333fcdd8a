// Package e2e drives whole ctmflow processes — real Temporal server, real
// database, signed HTTP — the way CTM does, on SQLite and on Postgres.
package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ctmflow/ctmflow/api"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/teststack"
	"github.com/ctmflow/ctmflow/workflows"
)

func leadsByPhone(t *testing.T, s *teststack.Stack, phone string) []api.Lead {
	t.Helper()
	var out api.LeadList
	status := s.Get(t, "/api/leads?phone="+url.QueryEscape(phone), &out)
	require.Equal(t, http.StatusOK, status)
	return out.Leads
}

func callOf(lead api.Lead, ctmID int64) *api.Call {
	for i := range lead.Calls {
		if lead.Calls[i].CTMCallID == ctmID {
			return &lead.Calls[i]
		}
	}
	return nil
}

// waitCall polls the API until the call exists and cond holds.
func waitCall(
	t *testing.T, s *teststack.Stack, phone string, ctmID int64,
	what string, cond func(*api.Call) bool,
) (api.Lead, *api.Call) {
	t.Helper()
	var lead api.Lead
	var call *api.Call
	teststack.Eventually(t, 15*time.Second, what, func() bool {
		leads := leadsByPhone(t, s, phone)
		if len(leads) != 1 {
			return false
		}
		lead = leads[0]
		call = callOf(lead, ctmID)
		return call != nil && cond(call)
	})
	return lead, call
}

func TestCallLifecycle(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := teststack.Start(t, teststack.Options{DatabaseURL: db.URL})
			phone := "+12395550181"
			sample := s.Sample(7001, phone)

			status, body := s.Post(t, "call-start", sample.StartBody())
			require.Equal(t, http.StatusAccepted, status, "start: %v", body)
			lead, call := waitCall(t, s, phone, 7001, "the lead while the call rings",
				func(c *api.Call) bool { return true })
			assert.Equal(t, models.StageStarted, call.Stage)
			assert.Equal(t, "Jordan Avery", lead.Name)
			assert.Contains(t, eventTypes(lead), models.EventLeadCreated)

			status, _ = s.Post(t, "call-start", sample.StartBody())
			assert.Equal(t, http.StatusOK, status, "a redelivered start is recognised")

			status, _ = s.Post(t, "call-end", sample.EndBody())
			require.Equal(t, http.StatusAccepted, status)
			lead, call = waitCall(t, s, phone, 7001, "the call's end steps",
				func(c *api.Call) bool {
					return c.Stage == models.StageEnded && c.Transcript != "" && c.RecordingURL != ""
				})
			assert.Equal(t, 312, call.DurationSeconds)
			assert.Equal(t, "answered", call.Status)
			require.NotNil(t, call.Agent)
			assert.Equal(t, "Dana Whitfield", call.Agent.Name)
			assert.Nil(t, call.StarRating)

			wfID := workflows.CallWorkflowID(s.AccountID, 7001)
			waitClosed(t, s, wfID)

			// The update comes after the run closed: a new run applies it
			// to the same lead.
			status, _ = s.Post(t, "call-update", sample.UpdateBody())
			require.Equal(t, http.StatusAccepted, status)
			lead, call = waitCall(t, s, phone, 7001, "the late star rating",
				func(c *api.Call) bool { return c.StarRating != nil })
			assert.Equal(t, 4, *call.StarRating)
			assert.Len(t, lead.Calls, 1)
			assert.Equal(t, []string{"insurance", "inpatient", "qualified"}, call.Tags)
			assert.Equal(t, 2, countRuns(t, s, wfID), "the late update ran as a second run")

			// A start retried after everything else changes nothing.
			late := sample
			late.Name = "Someone Else"
			status, body = s.Post(t, "call-start", late.StartBody())
			require.Equal(t, http.StatusAccepted, status)
			waitProcessed(t, s, body)
			leads := leadsByPhone(t, s, phone)
			require.Len(t, leads, 1)
			call = callOf(leads[0], 7001)
			assert.Equal(t, models.StageEnded, call.Stage)
			assert.Equal(t, "Jordan Avery", call.CallerName)
			assert.Equal(t, "Jordan Avery", leads[0].Name)

			// The same person texts: the message joins the lead.
			text := s.Sample(7002, "(239) 555-0181")
			status, _ = s.Post(t, "text-message", text.TextBody())
			require.Equal(t, http.StatusAccepted, status)
			teststack.Eventually(t, 15*time.Second, "the text on the lead", func() bool {
				leads := leadsByPhone(t, s, phone)
				return len(leads) == 1 && contains(eventTypes(leads[0]), models.EventMessageReceived)
			})

			// A repeat caller's new call joins the same lead.
			again := s.Sample(7003, phone)
			status, _ = s.Post(t, "call-end", again.EndBody())
			require.Equal(t, http.StatusAccepted, status, "an end may come first")
			lead, _ = waitCall(t, s, phone, 7003, "the repeat call",
				func(c *api.Call) bool { return c.Stage == models.StageEnded })
			assert.Len(t, lead.Calls, 2)
			assert.Equal(t, 1, count(eventTypes(lead), models.EventLeadCreated))

			assertNoPHIInHistory(t, s, wfID, phone)
		})
	}
}

func TestCallEndNeverArrives(t *testing.T) {
	s := teststack.Start(t, teststack.Options{EndTimeout: 2 * time.Second})
	phone := "+12395550182"
	status, _ := s.Post(t, "call-start", s.Sample(7101, phone).StartBody())
	require.Equal(t, http.StatusAccepted, status)
	waitCall(t, s, phone, 7101, "the call marked end_missing",
		func(c *api.Call) bool { return c.Stage == models.StageEndMissing })

	// The end turns up after all: the call still ends.
	status, _ = s.Post(t, "call-end", s.Sample(7101, phone).EndBody())
	require.Equal(t, http.StatusAccepted, status)
	waitCall(t, s, phone, 7101, "the late end applied",
		func(c *api.Call) bool { return c.Stage == models.StageEnded && c.Transcript != "" })
}

func waitCallStage(t *testing.T, s *teststack.Stack, phone string, ctmID int64, stage string) {
	t.Helper()
	waitCall(t, s, phone, ctmID, "call "+stage, func(c *api.Call) bool { return c.Stage == stage })
}

func waitCallRated(t *testing.T, s *teststack.Stack, phone string, ctmID int64) {
	t.Helper()
	waitCall(t, s, phone, ctmID, "call rated", func(c *api.Call) bool { return c.StarRating != nil })
}

func eventTypes(l api.Lead) []string {
	var out []string
	for _, e := range l.Events {
		out = append(out, e.Type)
	}
	return out
}

func contains(items []string, want string) bool { return count(items, want) > 0 }

func count(items []string, want string) int {
	n := 0
	for _, it := range items {
		if it == want {
			n++
		}
	}
	return n
}

func countRuns(t *testing.T, s *teststack.Stack, wfID string) int {
	t.Helper()
	resp, err := s.Client.ListWorkflow(context.Background(), listRequest(s, wfID))
	require.NoError(t, err)
	return len(resp.Executions)
}

// waitProcessed waits until a workflow has applied the delivery whose
// webhook answer is body.
func waitProcessed(t *testing.T, s *teststack.Stack, body map[string]any) {
	t.Helper()
	id, ok := body["delivery_id"].(float64)
	require.True(t, ok, "answer has a delivery_id: %v", body)
	teststack.Eventually(t, 15*time.Second, fmt.Sprintf("delivery %v processed", id), func() bool {
		d, err := s.Store.GetDelivery(context.Background(), int64(id))
		return err == nil && d.ProcessedAt != nil
	})
}

func waitClosed(t *testing.T, s *teststack.Stack, wfID string) {
	t.Helper()
	teststack.Eventually(t, 15*time.Second, wfID+" closed", func() bool {
		d, err := s.Client.DescribeWorkflowExecution(context.Background(), wfID, "")
		return err == nil && d.WorkflowExecutionInfo.Status == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	})
}

// assertNoPHIInHistory scans every run's history for the caller's number,
// name and a line of the transcript. It searches the events' binary
// encoding, where payloads are raw bytes (the JSON encoding would hide
// them in base64).
func assertNoPHIInHistory(t *testing.T, s *teststack.Stack, wfID, phone string) {
	t.Helper()
	resp, err := s.Client.ListWorkflow(context.Background(), listRequest(s, wfID))
	require.NoError(t, err)
	require.NotEmpty(t, resp.Executions)
	digits := strings.TrimPrefix(phone, "+1")
	for _, e := range resp.Executions {
		iter := s.Client.GetWorkflowHistory(context.Background(), wfID, e.Execution.RunId, false,
			enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for iter.HasNext() {
			ev, err := iter.Next()
			require.NoError(t, err)
			raw, err := proto.Marshal(ev)
			require.NoError(t, err)
			text := string(raw)
			assert.NotContains(t, text, digits, "history event %d of run %s", ev.EventId, e.Execution.RunId)
			assert.NotContains(t, text, "inpatient treatment")
			assert.NotContains(t, text, "Jordan")
		}
	}
}

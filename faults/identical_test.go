package faults

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/teststack"
	"github.com/ctmflow/ctmflow/workflows"
)

// A hundred copies of one webhook arrive at once, as a sender retrying in
// a tight loop produces: one delivery is stored and the other 99 are told
// they repeat it; one lead, one call, one workflow run, each effect once.
// Then the same for the call's end.
func TestHundredIdenticalDeliveries(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := teststack.Start(t, teststack.Options{DatabaseURL: db.URL})
			c := s.Sample(5_000_001, phone(5))

			start := burst(t, s, "call-start", c.StartBody(), 100)
			waitFor(t, 30*time.Second, "the call recorded", func() bool {
				_, err := s.Store.GetCall(context.Background(), s.AccountID, c.CallID)
				return err == nil
			})
			end := burst(t, s, "call-end", c.EndBody(), 100)

			call := waitEnded(t, s, c)
			lead, err := s.Store.GetLead(context.Background(), call.LeadID)
			require.NoError(t, err)
			assert.Len(t, lead.Calls, 1)
			assert.Equal(t, map[string]int{
				models.EventLeadCreated:     1,
				models.EventCallStarted:     1,
				models.EventRecordingReady:  1,
				models.EventTranscriptReady: 1,
				models.EventCallEnded:       1,
			}, countEvents(lead))
			leads, err := s.Store.ListLeads(context.Background(), store.LeadFilter{Phone: c.Phone})
			require.NoError(t, err)
			assert.Len(t, leads, 1, "one lead")

			for _, id := range []int64{start, end} {
				d, err := s.Store.GetDelivery(context.Background(), id)
				require.NoError(t, err)
				assert.Equal(t, models.DeliveryDispatched, d.Status)
				assert.Equal(t, 1, d.Attempts, "delivery %d handed over once", id)
			}
			assert.Equal(t, 1, runs(t, s, workflows.CallWorkflowID(s.AccountID, c.CallID)), "one workflow run")
		})
	}
}

// burst posts n copies of body at once and checks the answers: one 202,
// the rest 200, all naming one delivery, which it returns.
func burst(t *testing.T, s *teststack.Stack, path string, body []byte, n int) int64 {
	t.Helper()
	// Half keep the first copy's timestamp, half are signed anew a
	// second later, as a sender that re-signs its retries does.
	at := time.Now().Unix()
	answers := make([]answer, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			answers[i] = postAt(s, path, body, at+int64(i%2))
		}()
	}
	close(gate)
	wg.Wait()

	counts := map[int]int{}
	ids := map[int64]bool{}
	for _, a := range answers {
		require.NoError(t, a.err)
		counts[a.status]++
		ids[a.deliveryID] = true
	}
	assert.Equal(t, map[int]int{http.StatusAccepted: 1, http.StatusOK: n - 1}, counts, path)
	require.Len(t, ids, 1, "every answer names the one delivery")
	for id := range ids {
		return id
	}
	return 0
}

func waitEnded(t *testing.T, s *teststack.Stack, c ctm.Sample) *models.Call {
	t.Helper()
	var call *models.Call
	waitFor(t, time.Minute, fmt.Sprintf("call %d ended with its steps", c.CallID), func() bool {
		got, err := s.Store.GetCall(context.Background(), c.AccountID, c.CallID)
		if err != nil {
			return false
		}
		call = got
		return got.Stage == models.StageEnded && got.RecordingURL != "" && got.Transcript != "" && got.Status != ""
	})
	return call
}

// runs counts the runs of a workflow id once it has completed.
func runs(t *testing.T, s *teststack.Stack, wfID string) int {
	t.Helper()
	var n int
	waitFor(t, 30*time.Second, wfID+" listed as completed", func() bool {
		resp, err := s.Client.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: s.Config.TemporalNamespace,
			Query:     fmt.Sprintf("WorkflowId = '%s' AND ExecutionStatus = 'Completed'", wfID),
		})
		require.NoError(t, err)
		n = len(resp.Executions)
		return n > 0
	})
	resp, err := s.Client.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: s.Config.TemporalNamespace,
		Query:     fmt.Sprintf("WorkflowId = '%s'", wfID),
	})
	require.NoError(t, err)
	return len(resp.Executions)
}

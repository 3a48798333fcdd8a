package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/teststack"
	"github.com/ctmflow/ctmflow/workflows"
)

// defaultSeed makes the orderings reproducible; CTMFLOW_FAULTS_SEED tries
// others.
const defaultSeed = 20260301

// Many calls' starts, ends and late updates arrive in a random order,
// repeated, and some are replayed to their workflows at random moments.
// The final state of every lead and call is the one a clean order gives:
// each call's start, then its end, then its update, one at a time.
func TestRandomOrderingsMatchTheCleanOrder(t *testing.T) {
	const calls = 40
	seed := uint64(defaultSeed)
	if v := os.Getenv("CTMFLOW_FAULTS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "CTMFLOW_FAULTS_SEED")
		seed = n
	}
	t.Logf("seed %d (set CTMFLOW_FAULTS_SEED to replay another)", seed)

	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			clean := teststack.Start(t, teststack.Options{DatabaseURL: db.URL})
			mixed := teststack.Start(t, teststack.Options{DatabaseURL: testenvURL(t, db.Name)})

			// One X-CTM-Time per stage, the same in both runs: the stamp
			// is what orders a call's data, whatever the arrival order.
			base := time.Now().Add(-time.Minute).Truncate(time.Second)
			stamps := map[string]int64{
				"call-start":  base.Unix(),
				"call-end":    base.Add(time.Minute).Unix(),
				"call-update": base.Add(2 * time.Minute).Unix(),
			}
			samples := func(s *teststack.Stack) []ctm.Sample {
				var out []ctm.Sample
				for i := range calls {
					// Two calls per caller: repeat callers share a lead.
					c := s.Sample(int64(4_000_000+i), phone(i/2))
					c.Start, c.Rating = base, 1+i%5
					out = append(out, c)
				}
				return out
			}

			cleanCalls := samples(clean)
			for _, stage := range []string{"call-start", "call-end", "call-update"} {
				var ids []int64
				for _, c := range cleanCalls {
					a := postAt(clean, stage, body(c, stage), stamps[stage])
					require.NoError(t, a.err)
					require.Equal(t, http.StatusAccepted, a.status)
					ids = append(ids, a.deliveryID)
				}
				settle(t, clean, ids, cleanCalls, stage != "call-start")
			}

			rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
			mixedCalls := samples(mixed)
			var sends []send
			for _, c := range mixedCalls {
				for _, stage := range []string{"call-start", "call-end", "call-update"} {
					for range 1 + rng.IntN(3) {
						sends = append(sends, send{
							callID: c.CallID, path: stage, body: body(c, stage), ctmTime: stamps[stage],
						})
					}
				}
			}
			rng.Shuffle(len(sends), func(i, j int) { sends[i], sends[j] = sends[j], sends[i] })

			var acked []int64
			replays := 0
			for _, snd := range sends {
				a := postAt(mixed, snd.path, snd.body, snd.ctmTime)
				require.NoError(t, a.err)
				require.Contains(t, []int{http.StatusOK, http.StatusAccepted}, a.status)
				acked = append(acked, a.deliveryID)
				// Now and then an operator replays an earlier delivery.
				if rng.IntN(8) == 0 {
					replay(t, mixed, acked[rng.IntN(len(acked))])
					replays++
				}
			}
			t.Logf("%d calls: %d webhooks in a shuffled order, %d replays", calls, len(sends), replays)
			settle(t, mixed, acked, mixedCalls, true)

			for i := range calls {
				want := callState(t, clean, cleanCalls[i])
				got := callState(t, mixed, mixedCalls[i])
				assert.Equal(t, want, got, "call %d", cleanCalls[i].CallID)
			}
			for i := 0; i < calls; i += 2 {
				want := leadState(t, clean, cleanCalls[i].Phone)
				got := leadState(t, mixed, mixedCalls[i].Phone)
				assert.Equal(t, want, got, "lead of %s", cleanCalls[i].Phone)
			}
		})
	}
}

// testenvURL returns a second fresh database of the named kind.
func testenvURL(t *testing.T, kind string) string {
	if kind == store.Postgres {
		return testenv.PostgresURL(t)
	}
	return testenv.SQLiteURL(t)
}

func body(c ctm.Sample, stage string) []byte {
	switch stage {
	case "call-end":
		return c.EndBody()
	case "call-update":
		return c.UpdateBody()
	}
	return c.StartBody()
}

// settle waits until every delivery in ids is processed and the inbox is
// empty; with closed set, also until each call's latest workflow run has
// completed, which it does once its end steps are done. Nothing here
// depends on what the calls' final state is.
func settle(t *testing.T, s *teststack.Stack, ids []int64, calls []ctm.Sample, closed bool) {
	t.Helper()
	c := context.Background()
	waitFor(t, 2*time.Minute, "the deliveries applied", func() bool {
		for _, id := range ids {
			d, err := s.Store.GetDelivery(c, id)
			require.NoError(t, err)
			if d.ProcessedAt == nil {
				return false
			}
		}
		stats, err := s.Store.InboxStats(c)
		require.NoError(t, err)
		if stats.Pending > 0 {
			return false
		}
		if !closed {
			return true
		}
		for _, want := range calls {
			d, err := s.Client.DescribeWorkflowExecution(c, workflows.CallWorkflowID(want.AccountID, want.CallID), "")
			require.NoError(t, err)
			if d.WorkflowExecutionInfo.Status != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
				return false
			}
		}
		return true
	})
}

// callState is a call as the CRM shows it, without what differs between
// two stacks by construction: row ids, the account, write times.
func callState(t *testing.T, s *teststack.Stack, c ctm.Sample) models.Call {
	t.Helper()
	call, err := s.Store.GetCall(context.Background(), c.AccountID, c.CallID)
	require.NoError(t, err)
	out := *call
	out.ID, out.LeadID, out.AccountID = 0, 0, 0
	out.CreatedAt, out.UpdatedAt = time.Time{}, time.Time{}
	account := fmt.Sprintf("/accounts/%d/", c.AccountID)
	out.RecordingURL = strings.Replace(out.RecordingURL, account, "/accounts/A/", 1)
	if out.StartedAt != nil {
		at := out.StartedAt.UTC()
		out.StartedAt = &at
	}
	if out.EndedAt != nil {
		at := out.EndedAt.UTC()
		out.EndedAt = &at
	}
	return out
}

// lead is a lead's fields and timeline, the events named by type and the
// CTM call they concern.
type lead struct {
	Fields models.Lead
	Events []string
}

func leadState(t *testing.T, s *teststack.Stack, phone string) lead {
	t.Helper()
	leads, err := s.Store.ListLeads(context.Background(), store.LeadFilter{Phone: phone})
	require.NoError(t, err)
	require.Len(t, leads, 1, "one lead for %s", phone)
	l := leads[0]

	var events []string
	for _, e := range l.Events {
		// Which of a caller's calls created the lead depends on arrival;
		// that it was created once does not.
		if e.Type == models.EventLeadCreated {
			events = append(events, e.Type)
			continue
		}
		events = append(events, fmt.Sprintf("%s %v", e.Type, e.Data["ctm_call_id"]))
	}
	sort.Strings(events)

	f := l
	f.ID, f.AccountID, f.Calls, f.Events, f.Provenance = 0, 0, nil, nil, nil
	f.CreatedAt, f.UpdatedAt = time.Time{}, time.Time{}
	return lead{Fields: f, Events: events}
}

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/api"
	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/ctm/ctmtest"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/reconcile"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/teststack"
	"github.com/ctmflow/ctmflow/workflows"
)

// standIn starts a CTM API stand-in with the stack's account, and the
// environment that points a stack at it.
func standIn(t *testing.T, account int64, extra map[string]string) (*ctmtest.Server, map[string]string) {
	t.Helper()
	ctmAPI := ctmtest.New(t)
	ctmAPI.AddAccount(account)
	env := map[string]string{"CTM_API_URL": ctmAPI.URL(), "CTM_API_KEYS": ctmAPI.Keys()}
	for k, v := range extra {
		env[k] = v
	}
	return ctmAPI, env
}

// stackAccount is the account the next teststack will have; the
// stand-in must know it before the stack starts.
func stackAccount() int64 { return 1000 + time.Now().UnixNano()%1_000_000_000 }

func post(t *testing.T, s *teststack.Stack, path string, body []byte) {
	t.Helper()
	status, answer := s.Post(t, path, body)
	require.Less(t, status, 300, "%s: %v", path, answer)
	waitProcessed(t, s, answer)
}

func getLead(t *testing.T, s *teststack.Stack, phone string) api.Lead {
	t.Helper()
	leads := leadsByPhone(t, s, phone)
	require.Len(t, leads, 1)
	return leads[0]
}

// TestStaffEditsSurviveEveryStage edits a lead over the API after each
// stage of a call — start (run open), end (run closes), update (a new
// run) — followed by every later stage down to a late update long after
// the workflow closed. What a person set stays; the rest follows CTM.
func TestStaffEditsSurviveEveryStage(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := teststack.Start(t, teststack.Options{DatabaseURL: db.URL})
			for i, stage := range []string{"start", "end", "update"} {
				t.Run("edit after "+stage, func(t *testing.T) {
					callID := int64(9100 + i)
					phone := fmt.Sprintf("+1239555091%d", i)
					sample := s.Sample(callID, phone)
					stages := []struct {
						path string
						body []byte
					}{
						{"call-start", testenv.WithFields(t, sample.StartBody(), map[string]any{"name": "Jordan Avery",
							"city": "Fort Myers"})},
						{"call-end", testenv.WithFields(t, sample.EndBody(), map[string]any{"name": "Jordan A. Avery",
							"city": "Naples"})},
						{"call-update", testenv.WithFields(t, sample.UpdateBody(), map[string]any{"name": "J. Avery",
							"city": "Tampa"})},
						{"call-update", testenv.WithFields(t, sample.UpdateBody(), map[string]any{
							"name": "Jordan Avery-Smith", "city": "Miami", "source": "Bing",
							"sale": map[string]any{"score": 5}})},
					}
					wfID := workflows.CallWorkflowID(s.AccountID, callID)
					for j, st := range stages {
						post(t, s, st.path, st.body)
						if j >= 1 {
							// Each later stage comes after the last run closed.
							waitClosed(t, s, wfID)
						}
						if j != i {
							continue
						}
						lead := getLead(t, s, phone)
						status, answer := s.Patch(t, "/api/leads/"+strconv.FormatInt(lead.ID, 10),
							map[string]string{"name": "Jordan (JJ) Avery", "source": "Referral: Dr. Lee"})
						require.Equal(t, http.StatusOK, status, "%v", answer)
					}
					_, call := waitCall(t, s, phone, callID, "the late rating", func(c *api.Call) bool {
						return c.StarRating != nil && *c.StarRating == 5
					})
					assert.Equal(t, models.StageEnded, call.Stage)

					lead := getLead(t, s, phone)
					assert.Equal(t, "Jordan (JJ) Avery", lead.Name)
					assert.Equal(t, "Referral: Dr. Lee", lead.Source)
					assert.Equal(t, "Miami", lead.City, "untouched fields follow CTM")
					assert.Equal(t, models.OriginStaff, lead.Provenance["name"].By)
					assert.Equal(t, models.OriginCTM, lead.Provenance["city"].By)
					assert.Equal(t, 1, count(eventTypes(lead), models.EventLeadStaffUpdated))
					teststack.Eventually(t, 15*time.Second, "a run per update, each after the last closed",
						func() bool {
							return countRuns(t, s, wfID) == 3
						})
				})
			}
		})
	}
}

// TestCallEndFromCTMAPI lets the end wait time out and checks each of
// CTM's answers, end to end: the API's call object is applied as if the
// end webhook had come, a call in progress is waited for again, an
// unknown call is marked end_missing. A staff edit made while the call
// waited survives the API's data, and the recording plays through the
// service.
func TestCallEndFromCTMAPI(t *testing.T) {
	account := stackAccount()
	ctmAPI, env := standIn(t, account, map[string]string{
		"CALL_END_RECHECK": "1s", "CALL_END_MAX_CHECKS": "3",
	})
	s := teststack.Start(t, teststack.Options{EndTimeout: 2 * time.Second, Env: env, AccountID: account})

	audio := []byte("ID3 recording bytes, long enough to seek in. ")
	for len(audio) < 4096 {
		audio = append(audio, audio...)
	}
	endedAtCTM := func(id int64, phone string) ctm.Sample {
		sample := s.Sample(id, phone)
		ctmAPI.PutCall(testenv.WithFields(t, sample.EndBody(), map[string]any{
			"audio": ctmAPI.PutRecording(account, id, audio),
		}))
		return sample
	}

	t.Run("ended at CTM: applied as if the webhook had come", func(t *testing.T) {
		phone := "+12395550921"
		sample := endedAtCTM(9201, phone)
		post(t, s, "call-start", sample.StartBody())
		lead := getLead(t, s, phone)
		status, _ := s.Patch(t, "/api/leads/"+strconv.FormatInt(lead.ID, 10), map[string]string{"name": "JJ"})
		require.Equal(t, http.StatusOK, status)

		lead, call := waitCall(t, s, phone, 9201, "the end from CTM's API", func(c *api.Call) bool {
			return c.Stage == models.StageEnded && c.Transcript != "" && c.RecordingURL != ""
		})
		assert.Equal(t, 312, call.DurationSeconds)
		assert.Equal(t, "Dana Whitfield", call.Agent.Name)
		assert.Equal(t, "JJ", lead.Name, "the API's data never overrides a person")
		assert.Contains(t, eventTypes(lead), models.EventCallEnded)
		assert.NotContains(t, eventTypes(lead), models.EventCallEndMissing)
		assert.Equal(t, 1, ctmAPI.Requests("/calls/9201.json"))

		wfID := workflows.CallWorkflowID(s.AccountID, 9201)
		waitClosed(t, s, wfID)
		assertNoPHIInHistory(t, s, wfID, phone)

		t.Run("the recording plays through the service", func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, s.BaseURL+"/api/calls/"+strconv.FormatInt(call.ID,
				10)+"/recording", nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+s.Token)
			req.Header.Set("Range", "bytes=10-19")
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
			assert.Equal(t, audio[10:20], got)
			assert.Equal(t, fmt.Sprintf("bytes 10-19/%d", len(audio)), resp.Header.Get("Content-Range"))
			assert.Zero(t, ctmAPI.StorageSawCredentials())
		})
	})
	t.Run("in progress, then ended: waits again", func(t *testing.T) {
		phone := "+12395550922"
		sample := s.Sample(9202, phone)
		ctmAPI.PutCallSequence(sample.StartBody(), sample.EndBody())
		post(t, s, "call-start", sample.StartBody())
		waitCallStage(t, s, phone, 9202, models.StageEnded)
		assert.Equal(t, 2, ctmAPI.Requests("/calls/9202.json"))
	})
	t.Run("in progress every time: end_missing after the last check", func(t *testing.T) {
		phone := "+12395550923"
		sample := s.Sample(9203, phone)
		ctmAPI.PutCall(sample.StartBody())
		post(t, s, "call-start", sample.StartBody())
		waitCallStage(t, s, phone, 9203, models.StageEndMissing)
		assert.Equal(t, 3, ctmAPI.Requests("/calls/9203.json"))
	})
	t.Run("unknown to CTM: end_missing", func(t *testing.T) {
		phone := "+12395550924"
		post(t, s, "call-start", s.Sample(9204, phone).StartBody())
		waitCallStage(t, s, phone, 9204, models.StageEndMissing)
		assert.Equal(t, 1, ctmAPI.Requests("/calls/9204.json"))
	})
}

// TestReconcileFillsGapsOnce reconciles against a stand-in holding
// several pages and a mix of gaps, twice at once and once more after the
// workflows applied the first run's deliveries: every gap is filled, and
// nothing is stored or applied twice.
func TestReconcileFillsGapsOnce(t *testing.T) {
	account := stackAccount()
	ctmAPI, env := standIn(t, account, nil)
	s := teststack.Start(t, teststack.Options{Env: env, AccountID: account})
	ctx := context.Background()
	start := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	sample := func(id int64) ctm.Sample {
		return ctm.Sample{AccountID: account, CallID: id, Phone: fmt.Sprintf("+123955509%02d", id),
			Start: start.Add(time.Duration(id) * time.Minute)}
	}

	// Complete already.
	for id := int64(1); id <= 3; id++ {
		post(t, s, "call-start", sample(id).StartBody())
		post(t, s, "call-end", sample(id).EndBody())
		ctmAPI.PutCall(sample(id).EndBody())
	}
	// A start whose end never came; an end without its transcript.
	post(t, s, "call-start", sample(4).StartBody())
	ctmAPI.PutCall(sample(4).EndBody())
	post(t, s, "call-end", testenv.WithFields(t, sample(5).EndBody(),
		map[string]any{"transcription_text": nil, "summary": nil}))
	ctmAPI.PutCall(sample(5).EndBody())
	// Never reached us: two ended calls, one still ringing, a text.
	ctmAPI.PutCall(sample(6).EndBody())
	ctmAPI.PutCall(sample(7).EndBody())
	ctmAPI.PutCall(sample(8).StartBody())
	ctmAPI.PutCall(sample(9).TextBody())
	// The webhooks' end steps have run before reconciling.
	for _, id := range []int64{1, 2, 3, 5} {
		waitCallStage(t, s, sample(id).Phone, id, models.StageEnded)
	}

	client, err := ctm.NewClient(ctm.ClientOptions{BaseURL: ctmAPI.URL(), Keys: s.Config.CTMAPIKeys})
	require.NoError(t, err)
	opts := reconcile.Options{
		CTM: client, Store: s.Store, AccountID: account,
		Since: start, Until: time.Now(), PerPage: 2,
	}
	first, err := reconcile.Run(ctx, opts)
	require.NoError(t, err)
	second, err := reconcile.Run(ctx, opts)
	require.NoError(t, err)

	assert.Equal(t, 5, first.PagesRead)
	assert.Equal(t, 9, first.Checked)
	assert.Equal(t, 3, first.MissingCalls)
	assert.Equal(t, 1, first.MissingTexts)
	assert.Equal(t, 1, first.MissingEnds)
	assert.Equal(t, 1, first.MissingTranscripts)
	assert.Equal(t, 6, first.Queued)
	assert.Zero(t, second.Queued, "the second run stores nothing twice")

	teststack.Eventually(t, 30*time.Second, "the queued deliveries applied", func() bool {
		for _, id := range first.DeliveryIDs {
			d, err := s.Store.GetDelivery(ctx, id)
			if err != nil || d.ProcessedAt == nil {
				return false
			}
		}
		return true
	})
	for _, id := range []int64{4, 5, 6, 7} {
		waitCall(t, s, sample(id).Phone, id, fmt.Sprintf("call %d ended with its transcript", id),
			func(c *api.Call) bool {
				return c.Stage == models.StageEnded && c.Transcript != ""
			})
	}
	waitCallStage(t, s, sample(8).Phone, 8, models.StageStarted)

	third, err := reconcile.Run(ctx, opts)
	require.NoError(t, err)
	assert.Zero(t, third.Gaps(), "every gap is filled")
	assert.Zero(t, third.Queued+third.AlreadyQueued)

	leads, err := s.Store.ListLeads(ctx, store.LeadFilter{AccountID: account, Limit: 100})
	require.NoError(t, err)
	assert.Len(t, leads, 9, "one lead per caller")
	for _, l := range leads {
		assert.LessOrEqual(t, len(l.Calls), 1, "one call row per CTM call")
		types := map[string]int{}
		for _, e := range l.Events {
			types[e.Type]++
		}
		for typ, n := range types {
			assert.Equal(t, 1, n, "lead %d has %s %d times", l.ID, typ, n)
		}
	}
}

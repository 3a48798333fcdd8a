package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
)

var t0 = time.Date(2026, 11, 2, 15, 4, 0, 0, time.UTC)

func delivery(t *testing.T, kind string, body []byte, sent time.Time) store.CallDelivery {
	t.Helper()
	c, err := ctm.Parse(body)
	require.NoError(t, err)
	phone, _ := ctm.NormalizePhone(c.CallerNumber, "US")
	return store.CallDelivery{
		Kind:    kind,
		Version: store.Version(kind, sent),
		Call:    c,
		Phone:   phone,
	}
}

// apply runs what the workflow runs for one delivery.
func apply(t *testing.T, st *store.Store, d store.CallDelivery) store.CallRecord {
	t.Helper()
	ctx := context.Background()
	rec, err := st.RecordCall(ctx, d)
	require.NoError(t, err)
	if d.Kind == models.KindCallStart {
		return rec
	}
	_, err = st.AttachRecording(ctx, d)
	require.NoError(t, err)
	_, err = st.AttachTranscript(ctx, d)
	require.NoError(t, err)
	_, err = st.RecordOutcome(ctx, d, d.Call.Finished())
	require.NoError(t, err)
	return rec
}

func eventTypes(lead *models.Lead) []string {
	var out []string
	for _, e := range lead.Events {
		out = append(out, e.Type)
	}
	return out
}

func TestCallLifecycle(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			ctx := context.Background()
			s := ctm.Sample{AccountID: 7, CallID: 1001, Phone: "+12395550171", Start: t0}
			start := delivery(t, models.KindCallStart, s.StartBody(), t0)
			end := delivery(t, models.KindCallEnd, s.EndBody(), t0.Add(5*time.Minute))
			update := delivery(t, models.KindCallUpdate, s.UpdateBody(), t0.Add(9*time.Minute))

			orders := map[string][]store.CallDelivery{
				"in order":              {start, end, update},
				"end before start":      {end, start, update},
				"update first":          {update, end, start},
				"every delivery thrice": {start, start, end, update, end, start, update, end},
			}
			for name, order := range orders {
				t.Run(name, func(t *testing.T) {
					s.CallID++
					var leadID int64
					for _, d := range order {
						d.Call.ID = s.CallID
						rec := apply(t, st, d)
						if leadID == 0 {
							leadID = rec.LeadID
						}
						require.Equal(t, leadID, rec.LeadID, "every delivery lands on one lead")
					}

					lead, err := st.GetLead(ctx, leadID)
					require.NoError(t, err)
					require.NotNil(t, lead.Phone)
					assert.Equal(t, "+12395550171", *lead.Phone)
					assert.Equal(t, "Jordan Avery", lead.Name)
					assert.Equal(t, "Google Ads", lead.Source)

					call, err := st.GetCall(ctx, 7, s.CallID)
					require.NoError(t, err)
					assert.Equal(t, models.StageEnded, call.Stage)
					assert.Equal(t, "answered", call.Status)
					assert.Equal(t, 312, call.DurationSeconds)
					assert.Equal(t, ctm.SampleTranscript, call.Transcript)
					assert.NotEmpty(t, call.Summary)
					assert.Contains(t, call.RecordingURL, "/recording")
					require.NotNil(t, call.StarRating)
					assert.Equal(t, 4, *call.StarRating)
					assert.Equal(t, []string{"insurance", "inpatient", "qualified"}, call.Tags,
						"the update is newer than the end, whatever the arrival order")
					require.NotNil(t, call.EndedAt)
					assert.Equal(t, t0.Add(312*time.Second), call.EndedAt.UTC())

					var callEvents []string
					for _, e := range lead.Events {
						if e.CallID != nil && *e.CallID == call.ID && e.Type != models.EventLeadCreated {
							callEvents = append(callEvents, e.Type)
						}
					}
					assert.ElementsMatch(t, []string{
						models.EventCallStarted, models.EventRecordingReady,
						models.EventTranscriptReady, models.EventCallEnded,
						models.EventCallScored,
					}, callEvents)
				})
			}

			leads, err := st.ListLeads(ctx, store.LeadFilter{Phone: "+12395550171"})
			require.NoError(t, err)
			require.Len(t, leads, 1, "a repeat caller keeps one lead")
			assert.Len(t, leads[0].Calls, len(orders))
			assert.Equal(t, 1, count(eventTypes(&leads[0]), models.EventLeadCreated))
		})
	}
}

func count(items []string, want string) int {
	n := 0
	for _, it := range items {
		if it == want {
			n++
		}
	}
	return n
}

func TestLateStartNeverRollsBack(t *testing.T) {
	st := testenv.Store(t, testenv.SQLiteURL(t))
	ctx := context.Background()
	s := ctm.Sample{AccountID: 7, CallID: 55, Phone: "+12395550172", Start: t0}

	end := delivery(t, models.KindCallEnd, s.EndBody(), t0.Add(5*time.Minute))
	apply(t, st, end)

	late := ctm.Sample{AccountID: 7, CallID: 55, Phone: "+12395550172", Start: t0, Name: "Someone Else"}
	start := delivery(t, models.KindCallStart, late.StartBody(), t0.Add(time.Hour))
	apply(t, st, start)

	call, err := st.GetCall(ctx, 7, 55)
	require.NoError(t, err)
	assert.Equal(t, models.StageEnded, call.Stage)
	assert.Equal(t, "answered", call.DialStatus)
	assert.Equal(t, "Jordan Avery", call.CallerName, "a start, even sent later, ranks below an end")
}

func TestWithheldNumbersGetALeadPerCall(t *testing.T) {
	st := testenv.Store(t, testenv.SQLiteURL(t))
	ctx := context.Background()

	var leads []int64
	for id := int64(1); id <= 2; id++ {
		s := ctm.Sample{AccountID: 7, CallID: id, Phone: "anonymous", Start: t0}
		a := apply(t, st, delivery(t, models.KindCallStart, s.StartBody(), t0))
		b := apply(t, st, delivery(t, models.KindCallEnd, s.EndBody(), t0.Add(time.Minute)))
		require.Equal(t, a.LeadID, b.LeadID, "the end finds the start's lead through the call")
		leads = append(leads, a.LeadID)
	}
	assert.NotEqual(t, leads[0], leads[1])

	lead, err := st.GetLead(ctx, leads[0])
	require.NoError(t, err)
	assert.Nil(t, lead.Phone)
}

func TestMarkEndMissing(t *testing.T) {
	st := testenv.Store(t, testenv.SQLiteURL(t))
	ctx := context.Background()
	s := ctm.Sample{AccountID: 7, CallID: 9, Phone: "+12395550173", Start: t0}
	apply(t, st, delivery(t, models.KindCallStart, s.StartBody(), t0))

	res, err := st.MarkEndMissing(ctx, 7, 9)
	require.NoError(t, err)
	assert.Len(t, res.EventIDs, 1)
	call, err := st.GetCall(ctx, 7, 9)
	require.NoError(t, err)
	assert.Equal(t, models.StageEndMissing, call.Stage)

	// The end may still come, and wins.
	apply(t, st, delivery(t, models.KindCallEnd, s.EndBody(), t0.Add(5*time.Hour)))
	call, err = st.GetCall(ctx, 7, 9)
	require.NoError(t, err)
	assert.Equal(t, models.StageEnded, call.Stage)

	res, err = st.MarkEndMissing(ctx, 7, 9)
	require.NoError(t, err)
	assert.Empty(t, res.EventIDs)
	call, err = st.GetCall(ctx, 7, 9)
	require.NoError(t, err)
	assert.Equal(t, models.StageEnded, call.Stage, "an ended call is never marked missing")
}

func TestTextMessageAttachesToCallersLead(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			ctx := context.Background()
			s := ctm.Sample{AccountID: 7, CallID: 300, Phone: "+12395550174", Start: t0}
			rec := apply(t, st, delivery(t, models.KindCallStart, s.StartBody(), t0))

			text := ctm.Sample{AccountID: 7, CallID: 301, Phone: "(239) 555-0174", Start: t0}
			c, err := ctm.Parse(text.TextBody())
			require.NoError(t, err)
			phone, err := ctm.NormalizePhone(c.CallerNumber, "US")
			require.NoError(t, err)
			for range 2 {
				msg, err := st.RecordMessage(ctx, store.MessageDelivery{Message: c, Phone: phone})
				require.NoError(t, err)
				assert.Equal(t, rec.LeadID, msg.LeadID)
			}

			lead, err := st.GetLead(ctx, rec.LeadID)
			require.NoError(t, err)
			assert.Equal(t, 1, count(eventTypes(lead), models.EventMessageReceived))

			other := ctm.Sample{AccountID: 7, CallID: 302, Phone: "+12395550175", Start: t0}
			c, err = ctm.Parse(other.TextBody())
			require.NoError(t, err)
			msg, err := st.RecordMessage(ctx, store.MessageDelivery{Message: c, Phone: "+12395550175"})
			require.NoError(t, err)
			assert.True(t, msg.LeadCreated, "a text from a new number creates its lead")
		})
	}
}

package reconcile_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/activities"
	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/ctm/ctmtest"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/reconcile"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
)

const account = 701

var day = time.Date(2026, 5, 6, 9, 0, 0, 0, time.UTC)

func sample(id int64, phone string) ctm.Sample {
	return ctm.Sample{AccountID: account, CallID: id, Phone: phone, Start: day.Add(time.Duration(id) * time.Minute)}
}

// record stores body as a webhook would and applies it the way the call
// workflow does.
func record(t testing.TB, a *activities.Activities, kind string, body []byte) {
	t.Helper()
	c, err := ctm.Parse(body)
	require.NoError(t, err)
	sum := sha256.Sum256(body)
	d := &models.Delivery{AccountID: account, Kind: kind, BodySHA256: hex.EncodeToString(sum[:]),
		CTMID: c.ID, Body: body, CTMTime: "1778058000"}
	_, err = a.Store.SaveFetched(context.Background(), d)
	require.NoError(t, err)
	apply(t, a, d.ID, kind)
}

func apply(t testing.TB, a *activities.Activities, id int64, kind string) {
	t.Helper()
	ctx := context.Background()
	in := activities.DeliveryInput{DeliveryID: id, Kind: kind}
	if kind == models.KindTextMessage {
		_, err := a.RecordMessage(ctx, in)
		require.NoError(t, err)
		return
	}
	rec, err := a.RecordCall(ctx, in)
	require.NoError(t, err)
	require.NoError(t, a.AttachRecording(ctx, in))
	require.NoError(t, a.AttachTranscript(ctx, in))
	require.NoError(t, a.RecordOutcome(ctx, activities.OutcomeInput{DeliveryInput: in, Ends: rec.Finished}))
}

func TestReconcile(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			a := &activities.Activities{Store: st}
			api := ctmtest.New(t)
			creds := api.AddAccount(account)
			client, err := ctm.NewClient(ctm.ClientOptions{BaseURL: api.URL(),
				Keys: map[int64]ctm.Credentials{account: creds}})
			require.NoError(t, err)
			ctx := context.Background()

			// Five calls are complete in the CRM already.
			for id := int64(1); id <= 5; id++ {
				s := sample(id, "+1239555060"+string(rune('0'+id)))
				record(t, a, models.KindCallStart, s.StartBody())
				record(t, a, models.KindCallEnd, s.EndBody())
				api.PutCall(s.EndBody())
			}
			// Gaps: a call that never reached us, one still ringing at
			// CTM, a start whose end never came, an end without its
			// transcript, a scored call we have unscored, a lost text.
			api.PutCall(sample(10, "+12395550610").EndBody())
			api.PutCall(sample(11, "+12395550611").StartBody())
			record(t, a, models.KindCallStart, sample(12, "+12395550612").StartBody())
			api.PutCall(sample(12, "+12395550612").EndBody())
			record(t, a, models.KindCallEnd, testenv.WithFields(t, sample(13, "+12395550613").EndBody(),
				map[string]any{"transcription_text": nil, "summary": nil}))
			api.PutCall(sample(13, "+12395550613").EndBody())
			record(t, a, models.KindCallEnd, sample(14, "+12395550614").EndBody())
			api.PutCall(sample(14, "+12395550614").UpdateBody())
			api.PutCall(sample(15, "+12395550615").TextBody())
			// Outside the period: left alone.
			api.PutCall(ctm.Sample{AccountID: account, CallID: 20, Phone: "+12395550620",
				Start: day.Add(-12 * time.Hour)}.EndBody())

			opts := reconcile.Options{
				CTM: client, Store: st, AccountID: account,
				Since: day, Until: day.Add(24 * time.Hour), PerPage: 4,
			}
			var pages []int
			opts.Progress = func(s reconcile.Summary) { pages = append(pages, s.Page) }

			first, err := reconcile.Run(ctx, opts)
			require.NoError(t, err)
			assert.Equal(t, []int{1, 2, 3}, pages, "every page, through next_page")
			assert.Equal(t, 12, first.Listed)
			assert.Equal(t, 11, first.Checked)
			assert.Equal(t, 2, first.MissingCalls)
			assert.Equal(t, 1, first.MissingEnds)
			assert.Equal(t, 1, first.MissingTranscripts)
			assert.Equal(t, 1, first.MissingRatings)
			assert.Equal(t, 1, first.MissingTexts)
			assert.Equal(t, 6, first.Queued)

			kinds := map[int64]string{}
			for _, id := range first.DeliveryIDs {
				d, err := st.GetDelivery(ctx, id)
				require.NoError(t, err)
				assert.Equal(t, models.DeliveryPending, d.Status, "the relay hands it over")
				kinds[d.CTMID] = d.Kind
			}
			assert.Equal(t, map[int64]string{
				10: models.KindCallEnd, 11: models.KindCallStart, 12: models.KindCallEnd,
				13: models.KindCallEnd, 14: models.KindCallEnd, 15: models.KindTextMessage,
			}, kinds)

			t.Run("again before the workflows ran: nothing new", func(t *testing.T) {
				again, err := reconcile.Run(ctx, opts)
				require.NoError(t, err)
				assert.Zero(t, again.Queued)
				assert.Equal(t, 6, again.AlreadyQueued)
				assert.ElementsMatch(t, first.DeliveryIDs, again.DeliveryIDs)
			})
			t.Run("again once applied: no gap left", func(t *testing.T) {
				for _, id := range first.DeliveryIDs {
					d, err := st.GetDelivery(ctx, id)
					require.NoError(t, err)
					apply(t, a, id, d.Kind)
				}
				again, err := reconcile.Run(ctx, opts)
				require.NoError(t, err)
				assert.Zero(t, again.Gaps())
				assert.Zero(t, again.Queued+again.AlreadyQueued)

				call, err := st.GetCall(ctx, account, 13)
				require.NoError(t, err)
				assert.Equal(t, ctm.SampleTranscript, call.Transcript)
				call, err = st.GetCall(ctx, account, 12)
				require.NoError(t, err)
				assert.Equal(t, models.StageEnded, call.Stage)
				leads, err := st.ListLeads(ctx, store.LeadFilter{AccountID: account, Limit: 100})
				require.NoError(t, err)
				assert.Len(t, leads, 11, "one lead per caller, none twice")
			})
		})
	}
}

func TestReconcileScores(t *testing.T) {
	st := testenv.Store(t, testenv.SQLiteURL(t))
	a := &activities.Activities{Store: st}
	api := ctmtest.New(t)
	creds := api.AddAccount(account)
	client, err := ctm.NewClient(ctm.ClientOptions{BaseURL: api.URL(), Keys: map[int64]ctm.Credentials{account: creds}})
	require.NoError(t, err)
	s := sample(1, "+12395550631")
	record(t, a, models.KindCallEnd, s.EndBody())
	api.PutCall(s.EndBody())
	api.PutSale(account, 1, []byte(`{"score": 5, "conversion": true}`))
	opts := reconcile.Options{CTM: client, Store: st, AccountID: account, Since: day, Until: day.Add(time.Hour)}

	plain, err := reconcile.Run(context.Background(), opts)
	require.NoError(t, err)
	assert.Zero(t, plain.Gaps(), "without --scores the sale is not asked")

	opts.Scores = true
	scored, err := reconcile.Run(context.Background(), opts)
	require.NoError(t, err)
	assert.Equal(t, 1, scored.MissingRatings)
	d, err := st.GetDelivery(context.Background(), scored.DeliveryIDs[0])
	require.NoError(t, err)
	c, err := ctm.Parse(d.Body)
	require.NoError(t, err)
	require.NotNil(t, c.Sale)
	assert.Equal(t, 5, *c.Sale.Score)
}

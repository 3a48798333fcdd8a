package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/testenv"
)

func TestSaveFetched(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			ctx := context.Background()
			fetched := func() *models.Delivery {
				return &models.Delivery{
					AccountID: 7, Kind: models.KindCallEnd, BodySHA256: "abc", CTMID: 42,
					Body: []byte(`{"id":42}`),
				}
			}

			first := fetched()
			dup, err := st.SaveFetched(ctx, first)
			require.NoError(t, err)
			assert.False(t, dup)
			assert.Equal(t, models.DeliveryDispatched, first.Status, "the relay leaves it alone")
			refs, err := st.ClaimDue(ctx, "relay", time.Minute, 10)
			require.NoError(t, err)
			assert.Empty(t, refs)

			again := fetched()
			dup, err = st.SaveFetched(ctx, again)
			require.NoError(t, err)
			assert.True(t, dup)
			assert.Equal(t, first.ID, again.ID)

			t.Run("a purged duplicate gets its body back", func(t *testing.T) {
				// Applying the delivery starts its retention clock.
				d := delivery(t, models.KindCallEnd, ctm.Sample{AccountID: 7, CallID: 42,
					Phone: "+12395550399"}.EndBody(), t0)
				d.DeliveryID = first.ID
				_, err := st.RecordCall(ctx, d)
				require.NoError(t, err)
				n, err := st.PurgeBodies(ctx, time.Now().Add(time.Hour))
				require.NoError(t, err)
				require.Equal(t, int64(1), n)

				dup, err := st.SaveFetched(ctx, fetched())
				require.NoError(t, err)
				assert.True(t, dup)
				stored, err := st.GetDelivery(ctx, first.ID)
				require.NoError(t, err)
				assert.JSONEq(t, `{"id":42}`, string(stored.Body))
			})
		})
	}
}

func TestRetryLaterCutsReasonsOnACharacter(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			ctx := context.Background()
			d := &models.Delivery{AccountID: 1, Kind: models.KindCallStart, BodySHA256: "cut", CTMID: 1, Body: []byte(`{"id":1}`)}
			_, err := st.SaveDelivery(ctx, d, "relay-a", time.Minute)
			require.NoError(t, err)

			reason := strings.Repeat("a", 499) + "é and more"
			require.NoError(t, st.RetryLater(ctx, d.ID, "relay-a", reason, time.Now()))
			got, err := st.GetDelivery(ctx, d.ID)
			require.NoError(t, err)
			assert.Equal(t, strings.Repeat("a", 499), got.LastError)
		})
	}
}

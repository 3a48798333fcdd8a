package activities_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/ctmflow/ctmflow/activities"
	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/ctm/ctmtest"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/testenv"
)

func TestFetchCall(t *testing.T) {
	const account = 601
	api := ctmtest.New(t)
	creds := api.AddAccount(account)
	client, err := ctm.NewClient(ctm.ClientOptions{
		BaseURL: api.URL(),
		Keys:    map[int64]ctm.Credentials{account: creds},
	})
	require.NoError(t, err)
	st := testenv.Store(t, testenv.SQLiteURL(t))
	a := &activities.Activities{Store: st, CTM: client}
	ctx := context.Background()
	sample := func(id int64) ctm.Sample {
		return ctm.Sample{AccountID: account, CallID: id, Phone: "+12395550501", Start: time.Now().Add(-5 * time.Hour)}
	}
	api.PutCall(sample(1).EndBody())
	api.PutCall(sample(2).StartBody())

	t.Run("ended: stored as a call-end delivery the relay leaves alone", func(t *testing.T) {
		res, err := a.FetchCall(ctx, activities.CallRef{AccountID: account, CallID: 1})
		require.NoError(t, err)
		assert.Equal(t, activities.CTMCallEnded, res.Status)
		d, err := st.GetDelivery(ctx, res.DeliveryID)
		require.NoError(t, err)
		assert.Equal(t, models.KindCallEnd, d.Kind)
		assert.Equal(t, models.DeliveryDispatched, d.Status)
		assert.JSONEq(t, string(sample(1).EndBody()), string(d.Body))

		again, err := a.FetchCall(ctx, activities.CallRef{AccountID: account, CallID: 1})
		require.NoError(t, err)
		assert.Equal(t, res.DeliveryID, again.DeliveryID, "the same object is stored once")
	})

	answers := []struct {
		name string
		ref  activities.CallRef
		want string
	}{
		{name: "still ringing", ref: activities.CallRef{AccountID: account, CallID: 2},
			want: activities.CTMCallInProgress},
		{name: "unknown to CTM", ref: activities.CallRef{AccountID: account, CallID: 3},
			want: activities.CTMCallUnknown},
		{name: "no keys for the account", ref: activities.CallRef{AccountID: 999, CallID: 1},
			want: activities.CTMNoKeys},
	}
	for _, tc := range answers {
		t.Run(tc.name, func(t *testing.T) {
			res, err := a.FetchCall(ctx, tc.ref)
			require.NoError(t, err)
			assert.Equal(t, tc.want, res.Status)
			assert.Zero(t, res.DeliveryID)
		})
	}

	failures := []struct {
		name          string
		status        int
		retryAfter    string
		wantType      string
		wantRetryable bool
		wantDelay     time.Duration
	}{
		{name: "401 parks for a person", status: 401, wantType: activities.ErrTypeCTMUnauthorized},
		{name: "429 retries after Retry-After", status: 429, retryAfter: "42",
			wantType:      activities.ErrTypeCTMRateLimited,
			wantRetryable: true, wantDelay: 42 * time.Second},
		{name: "5xx retries", status: 500, wantType: activities.ErrTypeCTMUnavailable, wantRetryable: true},
		{name: "another 4xx parks", status: 400, wantType: activities.ErrTypeCTMRefused},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			api.Fail("/calls/1.json", tc.status, 1, tc.retryAfter)
			_, err := a.FetchCall(ctx, activities.CallRef{AccountID: account, CallID: 1})
			var appErr *temporal.ApplicationError
			require.True(t, errors.As(err, &appErr), "got %v, want an application error", err)
			assert.Equal(t, tc.wantType, appErr.Type())
			assert.Equal(t, tc.wantRetryable, !appErr.NonRetryable())
			assert.Equal(t, tc.wantDelay, appErr.NextRetryDelay())
			assert.NotContains(t, err.Error(), "+1239", "no caller detail in an error bound for history")
		})
	}
}

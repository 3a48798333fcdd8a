package ctm_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/ctm/ctmtest"
)

const account = 501

func newClient(t *testing.T, api *ctmtest.Server, creds ctm.Credentials, opts ctm.ClientOptions) *ctm.Client {
	t.Helper()
	opts.BaseURL = api.URL()
	opts.Keys = map[int64]ctm.Credentials{account: creds}
	c, err := ctm.NewClient(opts)
	require.NoError(t, err)
	return c
}

func sample(id int64) ctm.Sample {
	return ctm.Sample{AccountID: account, CallID: id, Phone: "+12395550401", Start: time.Now().Add(-time.Hour)}
}

func TestGetCallErrorClasses(t *testing.T) {
	api := ctmtest.New(t)
	creds := api.AddAccount(account)
	api.PutCall(sample(1).EndBody())
	ctx := context.Background()

	t.Run("found, with the account's Basic auth", func(t *testing.T) {
		body, err := newClient(t, api, creds, ctm.ClientOptions{}).GetCall(ctx, account, 1)
		require.NoError(t, err)
		c, err := ctm.Parse(body)
		require.NoError(t, err)
		assert.Equal(t, int64(1), c.ID)
		assert.True(t, c.Finished())
	})

	cases := []struct {
		name       string
		creds      ctm.Credentials
		callID     int64
		fail       func()
		want       error
		wantStatus int
	}{
		{name: "401: wrong keys", creds: ctm.Credentials{AccessKey: creds.AccessKey, SecretKey: "wrong"},
			callID: 1, want: ctm.ErrUnauthorized, wantStatus: 401},
		{name: "404: unknown call", creds: creds, callID: 2, want: ctm.ErrNotFound, wantStatus: 404},
		{name: "429: rate limited", creds: creds, callID: 1, want: ctm.ErrRateLimited, wantStatus: 429,
			fail: func() { api.Fail("/calls/1.json", 429, 1, "7") }},
		{name: "5xx: unavailable", creds: creds, callID: 1, want: ctm.ErrUnavailable, wantStatus: 503,
			fail: func() { api.Fail("/calls/1.json", 503, 1, "") }},
		{name: "other 4xx: refused", creds: creds, callID: 1, want: ctm.ErrRefused, wantStatus: 422,
			fail: func() { api.Fail("/calls/1.json", 422, 1, "") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fail != nil {
				tc.fail()
			}
			_, err := newClient(t, api, tc.creds, ctm.ClientOptions{}).GetCall(ctx, account, tc.callID)
			require.ErrorIs(t, err, tc.want)
			var apiErr *ctm.APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, tc.wantStatus, apiErr.Status)
			if tc.want == ctm.ErrRateLimited {
				assert.Equal(t, 7*time.Second, apiErr.RetryAfter)
			}
		})
	}

	t.Run("no keys for the account: no request", func(t *testing.T) {
		c := newClient(t, api, creds, ctm.ClientOptions{})
		before := api.Requests("/accounts/777/")
		_, err := c.GetCall(ctx, 777, 1)
		assert.ErrorIs(t, err, ctm.ErrNoCredentials)
		assert.Equal(t, before, api.Requests("/accounts/777/"))
		assert.False(t, c.HasKeys(777))
	})
	t.Run("CTM unreachable", func(t *testing.T) {
		c, err := ctm.NewClient(ctm.ClientOptions{
			BaseURL: "http://127.0.0.1:1", Keys: map[int64]ctm.Credentials{account: creds},
		})
		require.NoError(t, err)
		_, err = c.GetCall(ctx, account, 1)
		assert.ErrorIs(t, err, ctm.ErrUnavailable)
	})
}

func TestClientRetries(t *testing.T) {
	api := ctmtest.New(t)
	creds := api.AddAccount(account)
	api.PutCall(sample(1).EndBody())
	ctx := context.Background()

	t.Run("429 then success, after Retry-After", func(t *testing.T) {
		api.Fail("/calls/1.json", 429, 1, "1")
		var waits []time.Duration
		c := newClient(t, api, creds, ctm.ClientOptions{Retries: 3, OnRetry: func(_ error, d time.Duration) {
			waits = append(waits, d)
		}})
		before := api.Requests("/calls/1.json")
		_, err := c.GetCall(ctx, account, 1)
		require.NoError(t, err)
		assert.Equal(t, 2, api.Requests("/calls/1.json")-before)
		assert.Equal(t, []time.Duration{time.Second}, waits, "the wait is CTM's Retry-After")
	})
	t.Run("5xx twice then success", func(t *testing.T) {
		api.Fail("/calls/1.json", 502, 2, "")
		c := newClient(t, api, creds, ctm.ClientOptions{Retries: 3})
		_, err := c.GetCall(ctx, account, 1)
		require.NoError(t, err)
	})
	t.Run("a Retry-After beyond MaxWait is returned at once", func(t *testing.T) {
		api.Fail("/calls/1.json", 429, 1, "3600")
		c := newClient(t, api, creds, ctm.ClientOptions{Retries: 3, MaxWait: 10 * time.Second})
		before := api.Requests("/calls/1.json")
		_, err := c.GetCall(ctx, account, 1)
		require.ErrorIs(t, err, ctm.ErrRateLimited)
		var apiErr *ctm.APIError
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, time.Hour, apiErr.RetryAfter)
		assert.Equal(t, 1, api.Requests("/calls/1.json")-before)
	})
	t.Run("401 and 404 are never retried", func(t *testing.T) {
		c := newClient(t, api, creds, ctm.ClientOptions{Retries: 3})
		before := api.Requests("/calls/9.json")
		_, err := c.GetCall(ctx, account, 9)
		require.ErrorIs(t, err, ctm.ErrNotFound)
		assert.Equal(t, 1, api.Requests("/calls/9.json")-before)
	})
}

func TestListCallsPages(t *testing.T) {
	api := ctmtest.New(t)
	creds := api.AddAccount(account)
	day := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	for id := int64(1); id <= 320; id++ {
		api.PutCall(ctm.Sample{AccountID: account, CallID: id, Phone: "+12395550402", Start: day}.StartBody())
	}
	api.PutCall(ctm.Sample{AccountID: account, CallID: 999, Phone: "+12395550402", Start: day.AddDate(0, 0,
		-3)}.StartBody())
	c := newClient(t, api, creds, ctm.ClientOptions{})

	seen := map[int64]bool{}
	q := ctm.ListQuery{StartDate: day, EndDate: day, Page: 1}
	var pages []int
	for q.Page != 0 {
		page, err := c.ListCalls(context.Background(), account, q)
		require.NoError(t, err)
		pages = append(pages, len(page.Calls))
		for _, raw := range page.Calls {
			call, err := ctm.Parse(raw)
			require.NoError(t, err)
			seen[call.ID] = true
		}
		q.Page = page.NextPage
	}
	assert.Equal(t, []int{150, 150, 20}, pages)
	assert.Len(t, seen, 320)
	assert.False(t, seen[999], "outside the dates")
}

func TestGetSale(t *testing.T) {
	api := ctmtest.New(t)
	creds := api.AddAccount(account)
	api.PutSale(account, 5, []byte(`{"score": 5, "conversion": true, "value": 1200, "name": "Admitted"}`))
	raw, err := newClient(t, api, creds, ctm.ClientOptions{}).GetSale(context.Background(), account, 5)
	require.NoError(t, err)
	var sale map[string]any
	require.NoError(t, json.Unmarshal(raw, &sale))
	assert.EqualValues(t, 5, sale["score"])
}

func TestOpenRecording(t *testing.T) {
	api := ctmtest.New(t)
	creds := api.AddAccount(account)
	audio := []byte(strings.Repeat("ID3-audio-frames.", 1000))
	recURL := api.PutRecording(account, 1, audio)
	c := newClient(t, api, creds, ctm.ClientOptions{})
	ctx := context.Background()

	t.Run("whole file through CTM's redirect", func(t *testing.T) {
		resp, err := c.OpenRecording(ctx, account, recURL, http.Header{})
		require.NoError(t, err)
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, audio, got)
		assert.Equal(t, "bytes", resp.Header.Get("Accept-Ranges"))
	})
	t.Run("a range, for seeking", func(t *testing.T) {
		resp, err := c.OpenRecording(ctx, account, recURL, http.Header{"Range": {"bytes=100-199"}})
		require.NoError(t, err)
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
		assert.Equal(t, audio[100:200], got)
		assert.Equal(t, "bytes 100-199/17000", resp.Header.Get("Content-Range"))
	})
	t.Run("the storage never gets the keys", func(t *testing.T) {
		assert.Zero(t, api.StorageSawCredentials())
	})
	t.Run("a URL on another host is refused without a request", func(t *testing.T) {
		foreign := strings.Replace(recURL, api.URL(), api.Storage.URL, 1)
		before := api.Requests("/recording")
		_, err := c.OpenRecording(ctx, account, foreign, http.Header{})
		assert.ErrorIs(t, err, ctm.ErrForeignHost)
		_, err = c.OpenRecording(ctx, account, "https://evil.example/api/v1/accounts/501/calls/1/recording",
			http.Header{})
		assert.ErrorIs(t, err, ctm.ErrForeignHost)
		assert.Equal(t, before, api.Requests("/recording"))
	})
	t.Run("unknown recording", func(t *testing.T) {
		_, err := c.OpenRecording(ctx, account, strings.Replace(recURL, "/calls/1/", "/calls/2/", 1), http.Header{})
		assert.ErrorIs(t, err, ctm.ErrNotFound)
	})
	t.Run("errors never quote the URL", func(t *testing.T) {
		_, err := c.OpenRecording(ctx, account, strings.Replace(recURL, "/calls/1/", "/calls/2/", 1), http.Header{})
		require.Error(t, err)
		assert.NotContains(t, err.Error(), "/calls/2/")
		assert.False(t, errors.Is(err, ctm.ErrForeignHost))
	})
}

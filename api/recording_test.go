package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/api"
	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/ctm/ctmtest"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/server"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
)

// seedEnded records an ended call whose recording URL is audio.
func seedEnded(t *testing.T, st *store.Store, account, callID int64, audio string) int64 {
	t.Helper()
	s := ctm.Sample{AccountID: account, CallID: callID, Phone: "+12395550181", Start: time.Unix(1_790_000_000, 0)}
	var body map[string]any
	require.NoError(t, json.Unmarshal(s.EndBody(), &body))
	body["audio"] = audio
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	c, err := ctm.Parse(raw)
	require.NoError(t, err)
	d := store.CallDelivery{Kind: models.KindCallEnd, Version: 2, Call: c, Phone: "+12395550181"}
	ctx := context.Background()
	rec, err := st.RecordCall(ctx, d)
	require.NoError(t, err)
	if audio != "" {
		_, err = st.AttachRecording(ctx, d)
		require.NoError(t, err)
	}
	return rec.CallID
}

func TestRecordingProxy(t *testing.T) {
	const account = 3
	stand := ctmtest.New(t)
	creds := stand.AddAccount(account)
	client, err := ctm.NewClient(ctm.ClientOptions{
		BaseURL: stand.URL(),
		Keys:    map[int64]ctm.Credentials{account: creds},
	})
	require.NoError(t, err)
	st := testenv.Store(t, testenv.SQLiteURL(t))
	a := api.New(api.Options{Store: st, Token: token, CTM: client})
	h := server.NewRouter(server.Options{Mount: func(r *gin.Engine) { a.Register(a.Group(r)) }})

	audio := bytes.Repeat([]byte("fLaC-or-mp3-frames."), 2000)
	recorded := seedEnded(t, st, account, 1, stand.PutRecording(account, 1, audio))
	// Another host, which must never be asked (nor given the keys).
	var elsewhereHits atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		elsewhereHits.Add(1)
	}))
	t.Cleanup(elsewhere.Close)
	foreign := seedEnded(t, st, account, 2, elsewhere.URL+"/api/v1/accounts/3/calls/2/recording")
	silent := seedEnded(t, st, account, 3, "")
	otherAccount := seedEnded(t, st, 4, 4, stand.URL()+"/api/v1/accounts/4/calls/4/recording")
	path := func(id int64) string { return "/api/calls/" + jsonInt(float64(id)) + "/recording" }

	play := func(t *testing.T, p, rangeHeader string) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, p, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if rangeHeader != "" {
			req.Header.Set("Range", rangeHeader)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}

	t.Run("the whole recording", func(t *testing.T) {
		rec := play(t, path(recorded), "")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		assert.Equal(t, audio, rec.Body.Bytes())
		assert.Equal(t, "audio/mpeg", rec.Header().Get("Content-Type"))
		assert.Equal(t, "bytes", rec.Header().Get("Accept-Ranges"))
		assert.Equal(t, "private, no-store", rec.Header().Get("Cache-Control"))
		for name, values := range rec.Header() {
			for _, v := range values {
				assert.NotContains(t, v, stand.Storage.URL, "header %s shows the storage link", name)
			}
		}
	})
	t.Run("a range, so a player can seek", func(t *testing.T) {
		rec := play(t, path(recorded), "bytes=1000-1999")
		require.Equal(t, http.StatusPartialContent, rec.Code)
		assert.Equal(t, audio[1000:2000], rec.Body.Bytes())
		assert.Equal(t, "bytes 1000-1999/38000", rec.Header().Get("Content-Range"))
		assert.Equal(t, "1000", rec.Header().Get("Content-Length"))
	})
	t.Run("a range past the end", func(t *testing.T) {
		rec := play(t, path(recorded), "bytes=90000-")
		assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, rec.Code)
	})
	t.Run("the storage never saw the keys", func(t *testing.T) {
		assert.Zero(t, stand.StorageSawCredentials())
	})

	errs := []struct {
		name   string
		id     int64
		before func()
		status int
		code   string
	}{
		{name: "a URL on another host is refused", id: foreign, status: 502, code: "recording_url_refused"},
		{name: "no recording yet", id: silent, status: 404, code: "recording_not_found"},
		{name: "no such call", id: 999, status: 404, code: "call_not_found"},
		{name: "no keys for the account", id: otherAccount, status: 503, code: "ctm_keys_missing"},
		{name: "CTM refuses the keys", id: recorded, status: 502, code: "ctm_unauthorized",
			before: func() { stand.Fail("/recording", 401, 1, "") }},
		{name: "CTM rate limits", id: recorded, status: 503, code: "ctm_rate_limited",
			before: func() { stand.Fail("/recording", 429, 1, "12") }},
		{name: "CTM fails", id: recorded, status: 502, code: "ctm_unavailable",
			before: func() { stand.Fail("/recording", 500, 1, "") }},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			rec := play(t, path(tc.id), "")
			assert.Equal(t, tc.status, rec.Code)
			var body map[string]map[string]any
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			assert.Equal(t, tc.code, body["error"]["code"])
			assert.False(t, strings.Contains(rec.Body.String(), "/recording"), "the answer never quotes the URL")
			if tc.code == "ctm_rate_limited" {
				assert.Equal(t, "12", rec.Header().Get("Retry-After"))
			}
		})
	}
	t.Run("the refused host was never asked", func(t *testing.T) {
		assert.Zero(t, elsewhereHits.Load())
	})
}

package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/api"
	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/server"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
)

type waker struct{ woken int }

func (w *waker) Wake() { w.woken++ }

func newInboxAPI(t *testing.T) (http.Handler, *store.Store, *waker) {
	t.Helper()
	st := testenv.Store(t, testenv.SQLiteURL(t))
	w := &waker{}
	a := api.New(api.Options{Store: st, Token: token})
	h := server.NewRouter(server.Options{Mount: func(r *gin.Engine) {
		a.RegisterInbox(a.Group(r), w)
	}})
	return h, st, w
}

func call(t *testing.T, h http.Handler, method, path string, out any) int {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if out != nil {
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), out), rec.Body.String())
	}
	return rec.Code
}

func saveDelivery(t *testing.T, st *store.Store, callID int64, received time.Time) *models.Delivery {
	t.Helper()
	body := ctm.Sample{AccountID: 7, CallID: callID, Phone: "+12395550171"}.StartBody()
	sum := sha256.Sum256(body)
	d := &models.Delivery{
		AccountID: 7, Kind: models.KindCallStart, BodySHA256: hex.EncodeToString(sum[:]),
		CTMID: callID, Body: body, ReceivedAt: received,
	}
	_, err := st.SaveDelivery(context.Background(), d, "", time.Minute)
	require.NoError(t, err)
	return d
}

func TestInboxStats(t *testing.T) {
	h, st, _ := newInboxAPI(t)

	var empty api.InboxStats
	require.Equal(t, http.StatusOK, call(t, h, http.MethodGet, "/api/inbox", &empty))
	assert.Equal(t, api.InboxStats{}, empty)

	oldest := time.Now().Add(-90 * time.Second).UTC().Truncate(time.Millisecond)
	saveDelivery(t, st, 1, oldest)
	saveDelivery(t, st, 2, oldest.Add(time.Minute))

	var stats api.InboxStats
	require.Equal(t, http.StatusOK, call(t, h, http.MethodGet, "/api/inbox", &stats))
	assert.Equal(t, int64(2), stats.Pending)
	require.NotNil(t, stats.OldestPendingAt)
	assert.True(t, oldest.Equal(*stats.OldestPendingAt), "got %s, want %s", stats.OldestPendingAt, oldest)
	assert.GreaterOrEqual(t, stats.OldestPendingAgeSeconds, 90.0)
}

func TestInboxDeliveries(t *testing.T) {
	h, st, _ := newInboxAPI(t)
	saveDelivery(t, st, 1, time.Now())
	saveDelivery(t, st, 2, time.Now())

	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/api/inbox/deliveries?status=pending&limit=1", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.NotContains(t, rec.Body.String(), "2395550171", "bodies are never shown")
	var out struct{ Deliveries []api.Delivery }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out))
	require.Len(t, out.Deliveries, 1)
	assert.Equal(t, int64(2), out.Deliveries[0].CTMID, "newest first")

	for _, bad := range []string{"status=lost", "limit=0", "limit=201", "after=-1"} {
		var e struct{ Error struct{ Code string } }
		assert.Equal(t, http.StatusBadRequest, call(t, h, http.MethodGet, "/api/inbox/deliveries?"+bad, &e), bad)
		assert.Equal(t, "invalid_parameter", e.Error.Code, bad)
	}
}

func TestInboxReplay(t *testing.T) {
	h, st, w := newInboxAPI(t)
	ctx := context.Background()
	d := saveDelivery(t, st, 1, time.Now())
	refs, err := st.ClaimDue(ctx, "relay-a", time.Minute, 1)
	require.NoError(t, err)
	require.NoError(t, st.MarkDispatched(ctx, refs[0].ID, "relay-a"))

	path := "/api/inbox/deliveries/" + strconv.FormatInt(d.ID, 10) + "/replay"
	assert.Equal(t, http.StatusAccepted, call(t, h, http.MethodPost, path, nil))
	assert.Equal(t, 1, w.woken, "the relay is woken, not left to its next poll")
	got, err := st.GetDelivery(ctx, d.ID)
	require.NoError(t, err)
	assert.Equal(t, models.DeliveryPending, got.Status)

	purged := saveDelivery(t, st, 2, time.Now())
	c, err := ctm.Parse(purged.Body)
	require.NoError(t, err)
	_, err = st.RecordCall(ctx, store.CallDelivery{DeliveryID: purged.ID, Kind: purged.Kind, Call: c})
	require.NoError(t, err)
	_, err = st.PurgeBodies(ctx, time.Now().Add(time.Hour))
	require.NoError(t, err)

	cases := map[string]struct {
		id     string
		status int
		code   string
	}{
		"unknown":   {"999999", http.StatusNotFound, "delivery_not_found"},
		"purged":    {strconv.FormatInt(purged.ID, 10), http.StatusGone, "delivery_purged"},
		"not an id": {"abc", http.StatusBadRequest, "invalid_parameter"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var e struct{ Error struct{ Code string } }
			path := "/api/inbox/deliveries/" + tc.id + "/replay"
			assert.Equal(t, tc.status, call(t, h, http.MethodPost, path, &e))
			assert.Equal(t, tc.code, e.Error.Code)
		})
	}

	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(""))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusUnauthorized, rec.Code, "the inbox needs the token")
}

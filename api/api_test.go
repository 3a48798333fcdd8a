package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
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

const token = "api-test-token-0123456789"

func newAPI(t *testing.T, st *store.Store) http.Handler {
	t.Helper()
	a := api.New(api.Options{Store: st, Token: token})
	return server.NewRouter(server.Options{Mount: func(r *gin.Engine) {
		g := a.Group(r)
		a.Register(g)
		a.RegisterInbox(g, nil)
	}})
}

func get(t *testing.T, h http.Handler, path, tok string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var body map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
	return rec.Code, body
}

func seed(t *testing.T, st *store.Store, callID int64, phone string) store.CallRecord {
	t.Helper()
	s := ctm.Sample{AccountID: 3, CallID: callID, Phone: phone, Start: time.Unix(1_790_000_000, 0)}
	c, err := ctm.Parse(s.StartBody())
	require.NoError(t, err)
	rec, err := st.RecordCall(context.Background(), store.CallDelivery{
		Kind: models.KindCallStart, Version: 1, Call: c, Phone: phone,
	})
	require.NoError(t, err)
	return rec
}

func TestLeads(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			h := newAPI(t, st)
			first := seed(t, st, 1, "+12395550161")
			seed(t, st, 2, "+12395550162")
			seed(t, st, 3, "+12395550161")

			t.Run("list newest first", func(t *testing.T) {
				status, body := get(t, h, "/api/leads", token)
				require.Equal(t, http.StatusOK, status)
				leads := body["leads"].([]any)
				require.Len(t, leads, 2)
				assert.Equal(t, "+12395550162", leads[0].(map[string]any)["phone"])
			})
			t.Run("filter by phone in any format", func(t *testing.T) {
				status, body := get(t, h, "/api/leads?phone="+url.QueryEscape("(239) 555-0161"), token)
				require.Equal(t, http.StatusOK, status)
				leads := body["leads"].([]any)
				require.Len(t, leads, 1)
				lead := leads[0].(map[string]any)
				assert.Len(t, lead["calls"], 2, "a repeat caller's calls share the lead")
				for _, key := range []string{"id", "phone", "name", "source", "created_at", "calls", "events"} {
					assert.Contains(t, lead, key)
				}
				call := lead["calls"].([]any)[0].(map[string]any)
				for _, key := range []string{"ctm_call_id", "account_id", "direction", "stage", "status",
					"duration_seconds", "talk_time_seconds", "recording_url", "transcript", "summary",
					"star_rating", "tags", "started_at", "ended_at"} {
					assert.Contains(t, call, key)
				}
			})
			t.Run("paging", func(t *testing.T) {
				status, body := get(t, h, "/api/leads?limit=1", token)
				require.Equal(t, http.StatusOK, status)
				next := body["next"].(float64)
				status, body = get(t, h, "/api/leads?limit=1&after="+jsonInt(next), token)
				require.Equal(t, http.StatusOK, status)
				assert.Equal(t, "+12395550161", body["leads"].([]any)[0].(map[string]any)["phone"])
			})
			t.Run("one lead", func(t *testing.T) {
				status, body := get(t, h, "/api/leads/"+jsonInt(float64(first.LeadID)), token)
				require.Equal(t, http.StatusOK, status)
				assert.Equal(t, "Jordan Avery", body["name"])
			})
		})
	}
}

// jsonInt renders a JSON number (decoded as float64) as an integer.
func jsonInt(f float64) string { return strconv.FormatInt(int64(f), 10) }

func TestLeadErrors(t *testing.T) {
	st := testenv.Store(t, testenv.SQLiteURL(t))
	h := newAPI(t, st)
	cases := []struct {
		name, path, token string
		status            int
		code              string
	}{
		{"no token", "/api/leads", "", 401, "token_missing"},
		{"wrong token", "/api/leads", "nope", 401, "token_invalid"},
		{"unreadable phone", "/api/leads?phone=abc", token, 400, "invalid_parameter"},
		{"limit too large", "/api/leads?limit=1000", token, 400, "invalid_parameter"},
		{"negative paging", "/api/leads?after=-1", token, 400, "invalid_parameter"},
		{"bad id", "/api/leads/x", token, 400, "invalid_parameter"},
		{"no such lead", "/api/leads/999", token, 404, "lead_not_found"},
		{"unknown path", "/api/nothing", token, 404, "not_found"},
		{"bad inbox status", "/api/inbox/deliveries?status=lost", token, 400, "invalid_parameter"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := get(t, h, tc.path, tc.token)
			assert.Equal(t, tc.status, status)
			require.Contains(t, body, "error")
			assert.Equal(t, tc.code, body["error"].(map[string]any)["code"])
		})
	}
}

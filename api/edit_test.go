package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/testenv"
)

func patch(t *testing.T, h http.Handler, path, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPatch, path, bytes.NewBufferString(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out), rec.Body.String())
	return rec.Code, out
}

func TestEditLead(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			st := testenv.Store(t, db.URL)
			h := newAPI(t, st)
			lead := seed(t, st, 1, "+12395550171")
			seed(t, st, 2, "+12395550172")
			path := "/api/leads/" + jsonInt(float64(lead.LeadID))

			status, body := patch(t, h, path,
				`{"name": " Jordan (JJ) Avery ", "source": "Referral", "email": "jj@example.org", "phone": "(239) 555-0173"}`)
			require.Equal(t, http.StatusOK, status, "%v", body)
			assert.Equal(t, "Jordan (JJ) Avery", body["name"], "trimmed")
			assert.Equal(t, "+12395550173", body["phone"], "normalised to E.164")

			status, body = get(t, h, path, token)
			require.Equal(t, http.StatusOK, status)
			prov := body["provenance"].(map[string]any)
			for _, f := range []string{"name", "source", "email", "phone"} {
				assert.Equal(t, "staff", prov[f].(map[string]any)["by"], f)
			}
			city := prov["city"].(map[string]any)
			assert.Equal(t, "ctm", city["by"])
			assert.EqualValues(t, 1, city["ctm_call_id"])
			assert.NotEmpty(t, city["at"])
			events := body["events"].([]any)
			last := events[len(events)-1].(map[string]any)
			assert.Equal(t, "lead.updated", last["type"])
			assert.Equal(t, []any{"email", "name", "phone", "source"}, last["data"].(map[string]any)["fields"])
		})
	}
}

func TestEditLeadErrors(t *testing.T) {
	st := testenv.Store(t, testenv.SQLiteURL(t))
	h := newAPI(t, st)
	lead := seed(t, st, 1, "+12395550171")
	seed(t, st, 2, "+12395550172")
	path := "/api/leads/" + jsonInt(float64(lead.LeadID))

	cases := []struct {
		name       string
		path, body string
		status     int
		code       string
		// field is the field the error must name, with its reason.
		field, why string
	}{
		{name: "unknown field", body: `{"nickname": "JJ"}`, status: 422, code: "invalid_fields",
			field: "nickname", why: "is not an editable field"},
		{name: "not a string", body: `{"name": 7}`, status: 422, code: "invalid_fields", field: "name",
			why: "must be a string"},
		{name: "null", body: `{"city": null}`, status: 422, code: "invalid_fields", field: "city",
			why: "must be a string"},
		{name: "too long", body: `{"postal_code": "` + strings.Repeat("9", 21) + `"}`, status: 422,
			code: "invalid_fields", field: "postal_code", why: "must be at most 20 characters"},
		{name: "control characters", body: `{"name": "a\u0000b"}`, status: 422, code: "invalid_fields",
			field: "name", why: "must not contain control characters"},
		{name: "bad email", body: `{"email": "Jordan <j@example.org>"}`, status: 422, code: "invalid_fields",
			field: "email", why: "must be an email address, e.g. name@example.org"},
		{name: "bad phone", body: `{"phone": "call me"}`, status: 422, code: "invalid_fields",
			field: "phone", why: "must be a phone number, e.g. +12395550171"},
		{name: "phone cleared", body: `{"phone": ""}`, status: 422, code: "invalid_fields",
			field: "phone", why: "cannot be cleared: it is the lead's key"},
		{name: "phone of another lead", body: `{"phone": "+1 239 555 0172"}`, status: 409, code: "phone_taken",
			field: "phone", why: "belongs to another lead of the account"},
		{name: "no field", body: `{}`, status: 422, code: "no_fields"},
		{name: "not JSON", body: `name=JJ`, status: 400, code: "invalid_json"},
		{name: "a list", body: `["name"]`, status: 400, code: "invalid_json"},
		{name: "bad id", path: "/api/leads/x", body: `{"name": "JJ"}`, status: 400, code: "invalid_parameter",
			field: "id", why: "must be a positive integer"},
		{name: "no such lead", path: "/api/leads/999", body: `{"name": "JJ"}`, status: 404, code: "lead_not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.path
			if p == "" {
				p = path
			}
			status, body := patch(t, h, p, tc.body)
			assert.Equal(t, tc.status, status)
			require.Contains(t, body, "error")
			e := body["error"].(map[string]any)
			assert.Equal(t, tc.code, e["code"])
			if tc.field != "" {
				assert.Equal(t, tc.why, e["fields"].(map[string]any)[tc.field])
			}
		})
	}

	t.Run("several bad fields are all named", func(t *testing.T) {
		status, body := patch(t, h, path, `{"name": 1, "email": "x", "city": "Naples"}`)
		assert.Equal(t, 422, status)
		fields := body["error"].(map[string]any)["fields"].(map[string]any)
		assert.Len(t, fields, 2)
		assert.Equal(t, "email must be an email address, e.g. name@example.org; name must be a string",
			body["error"].(map[string]any)["message"])
	})
	t.Run("wrong content type", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPatch, path, strings.NewReader(`{"name":"JJ"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "text/plain")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusUnsupportedMediaType, rec.Code)
	})
	t.Run("no token", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPatch, path, strings.NewReader(`{"name":"JJ"}`))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusUnauthorized, rec.Code)
	})
	t.Run("nothing changed by a refused edit", func(t *testing.T) {
		status, body := get(t, h, path, token)
		require.Equal(t, http.StatusOK, status)
		assert.Equal(t, "Jordan Avery", body["name"])
		name := body["provenance"].(map[string]any)["name"].(map[string]any)
		assert.Equal(t, "ctm", name["by"])
	})
}

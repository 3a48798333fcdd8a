package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/api"
	"github.com/ctmflow/ctmflow/cli"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/teststack"
	"github.com/ctmflow/ctmflow/triggers"
)

type errorBody struct {
	Error struct {
		Code    string            `json:"code"`
		Message string            `json:"message"`
		Fields  map[string]string `json:"fields"`
	} `json:"error"`
}

func TestTriggerRulesAPI(t *testing.T) {
	s := teststack.Start(t, teststack.Options{Env: triggerEnv(nil)})
	rc := newReceiver(t)

	t.Run("bad rules name the field and why", func(t *testing.T) {
		cases := []struct {
			name   string
			body   any
			status int
			fields []string
		}{
			{"empty object", map[string]any{}, http.StatusUnprocessableEntity,
				[]string{"name", "event", "destination.url"}},
			{"unknown event", map[string]any{"name": "x", "event": "call.rang",
				"destination": map[string]any{"url": rc.URL()}}, http.StatusUnprocessableEntity, []string{"event"}},
			{"rating out of range and bad secret", map[string]any{"name": "x", "event": "call.scored",
				"conditions":  map[string]any{"min_star_rating": 9},
				"destination": map[string]any{"url": rc.URL(), "secret": "s3cret"}},
				http.StatusUnprocessableEntity, []string{"conditions.min_star_rating", "destination.secret"}},
			{"rating as text", map[string]any{"name": "x", "event": "call.scored",
				"conditions": map[string]any{"min_star_rating": "four"}},
				http.StatusBadRequest, []string{"conditions.min_star_rating"}},
			{"unknown field", map[string]any{"name": "x", "evnt": "call.scored"},
				http.StatusBadRequest, []string{"evnt"}},
			{"rotate on create", map[string]any{"name": "x", "event": "call.scored",
				"destination": map[string]any{"url": rc.URL(), "rotate_secret": true}},
				http.StatusUnprocessableEntity, []string{"destination.rotate_secret"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				var out errorBody
				status := s.Call(t, http.MethodPost, "/api/triggers", tc.body, &out)
				assert.Equal(t, tc.status, status)
				for _, f := range tc.fields {
					assert.NotEmpty(t, out.Error.Fields[f], "got fields %v, want %s explained", out.Error.Fields, f)
				}
				assert.Len(t, out.Error.Fields, len(tc.fields), "got fields %v", out.Error.Fields)
			})
		}

		var out errorBody
		assert.Equal(t, http.StatusBadRequest, s.Call(t, http.MethodPost, "/api/triggers", "not an object", &out))
		assert.Equal(t, "invalid_json", out.Error.Code)
	})

	secret := triggers.NewSecret()
	var rule api.Rule
	t.Run("create with a secret of one's own", func(t *testing.T) {
		rule = createRule(t, s, map[string]any{
			"name": "Dialer", "event": models.EventLeadCreated,
			"destination": map[string]any{"url": rc.URL(), "secret": secret, "rate_limit_per_second": 2},
		})
		assert.Empty(t, rule.Destination.Secret, "a secret the caller gave is not echoed")
		assert.True(t, rule.Enabled)
		assert.Equal(t, 2.0, rule.Destination.RateLimitPerSecond)

		var got api.Rule
		require.Equal(t, http.StatusOK, s.Call(t, http.MethodGet, fmt.Sprintf("/api/triggers/%d", rule.ID), nil, &got))
		assert.Equal(t, rule.Name, got.Name)
		assert.Empty(t, got.Destination.Secret, "never shown again")

		var list struct{ Triggers []api.Rule }
		require.Equal(t, http.StatusOK, s.Call(t, http.MethodGet, "/api/triggers?event=lead.created", nil, &list))
		require.Len(t, list.Triggers, 1)
		assert.Empty(t, list.Triggers[0].Destination.Secret)
	})

	t.Run("a bad patch changes nothing", func(t *testing.T) {
		var out errorBody
		status := s.Call(t, http.MethodPatch, fmt.Sprintf("/api/triggers/%d", rule.ID),
			map[string]any{"name": "Renamed", "destination": map[string]any{"url": "http://10.0.0.5/hook"}}, &out)
		assert.Equal(t, http.StatusUnprocessableEntity, status)
		assert.Contains(t, out.Error.Fields["destination.url"], "private")

		status = s.Call(t, http.MethodPatch, fmt.Sprintf("/api/triggers/%d", rule.ID),
			map[string]any{"destination": map[string]any{"secret": triggers.NewSecret(), "rotate_secret": true}}, &out)
		assert.Equal(t, http.StatusUnprocessableEntity, status)

		var got api.Rule
		s.Call(t, http.MethodGet, fmt.Sprintf("/api/triggers/%d", rule.ID), nil, &got)
		assert.Equal(t, "Dialer", got.Name)
	})

	t.Run("rotation signs with both secrets for the overlap", func(t *testing.T) {
		var rotated api.Rule
		status := s.Call(t, http.MethodPatch, fmt.Sprintf("/api/triggers/%d", rule.ID),
			map[string]any{"destination": map[string]any{"rotate_secret": true}}, &rotated)
		require.Equal(t, http.StatusOK, status)
		require.NotEmpty(t, rotated.Destination.Secret, "the new secret is shown once")
		assert.NotEqual(t, secret, rotated.Destination.Secret)
		require.NotNil(t, rotated.Destination.PreviousSecretUntil)
		assert.WithinDuration(t, time.Now().Add(24*time.Hour), *rotated.Destination.PreviousSecretUntil, time.Minute)

		rc.trust(secret, rotated.Destination.Secret)
		status, _ = s.Post(t, "call-start", s.Sample(8701, "+12395550170").StartBody())
		require.Equal(t, http.StatusAccepted, status)
		h := rc.waitHits(1, "the request after the rotation")[0]
		assert.Equal(t, []bool{true, true}, h.Verified, "receivers with the old or the new secret both accept")
	})

	t.Run("resend", func(t *testing.T) {
		var d api.TriggerDelivery
		teststack.Eventually(t, 10*time.Second, "the first delivery delivered", func() bool {
			ds := listDeliveries(t, s, fmt.Sprintf("?rule_id=%d&status=delivered", rule.ID))
			if len(ds) == 1 {
				d = ds[0]
			}
			return len(ds) == 1
		})

		var resent api.TriggerDelivery
		status := s.Call(t, http.MethodPost, fmt.Sprintf("/api/deliveries/%d/resend", d.ID), nil, &resent)
		require.Equal(t, http.StatusAccepted, status)
		assert.Equal(t, 1, resent.Resends)
		hits := rc.waitHits(2, "the resent request")
		assert.Equal(t, hits[0].WebhookID, hits[1].WebhookID, "a resend keeps the webhook id")

		// The same from the command line: the worker's sweeper sends it.
		t.Setenv("DATABASE_URL", s.Config.DatabaseURL)
		teststack.Eventually(t, 10*time.Second, "the resend delivered", func() bool {
			var got api.TriggerDelivery
			s.Call(t, http.MethodGet, fmt.Sprintf("/api/deliveries/%d", d.ID), nil, &got)
			return got.Status == models.TriggerDelivered
		})
		var out, errOut bytes.Buffer
		code := cli.Execute([]string{"deliveries", "resend", strconv.FormatInt(d.ID, 10)}, &out, &errOut)
		require.Equal(t, cli.ExitOK, code, errOut.String())
		assert.Contains(t, out.String(), "pending again")
		rc.waitHits(3, "the request resent from the command line")

		code = cli.Execute([]string{"deliveries", "resend", "x"}, &out, &errOut)
		assert.Equal(t, cli.ExitUsage, code)
		code = cli.Execute([]string{"deliveries", "resend", "999999"}, &out, &errOut)
		assert.Equal(t, cli.ExitFailure, code)
		assert.Contains(t, errOut.String(), "no trigger delivery 999999")

		var failure errorBody
		assert.Equal(t, http.StatusNotFound,
			s.Call(t, http.MethodPost, "/api/deliveries/999999/resend", nil, &failure))
		assert.Equal(t, http.StatusBadRequest,
			s.Call(t, http.MethodGet, "/api/deliveries?status=lost", nil, &failure))
		assert.Contains(t, failure.Error.Fields["status"], "delivered")
	})

	t.Run("delete", func(t *testing.T) {
		path := fmt.Sprintf("/api/triggers/%d", rule.ID)
		assert.Equal(t, http.StatusNoContent, s.Call(t, http.MethodDelete, path, nil, nil))
		var out errorBody
		assert.Equal(t, http.StatusNotFound, s.Call(t, http.MethodGet, path, nil, &out))
		assert.Equal(t, "trigger_not_found", out.Error.Code)
		assert.Equal(t, http.StatusNotFound, s.Call(t, http.MethodDelete, path, nil, &out))
		assert.Equal(t, http.StatusBadRequest, s.Call(t, http.MethodGet, "/api/triggers/abc", nil, &out))
		assert.NotEmpty(t, listDeliveries(t, s, fmt.Sprintf("?rule_id=%d", rule.ID)), "the log outlives the rule")
	})
}

// TestResendInProgress: a delivery still being attempted cannot be resent.
// No worker runs, so nothing moves the delivery on.
func TestResendInProgress(t *testing.T) {
	s := teststack.Start(t, teststack.Options{NoWorker: true, Env: triggerEnv(nil)})
	rule := createRule(t, s, map[string]any{
		"name": "Dialer", "event": models.EventLeadCreated,
		"destination": map[string]any{"url": "https://dialer.example.org/hook"},
	})
	ctx := context.Background()
	rec := recordDirectly(t, s, s.Sample(8801, "+12395550169"))
	facts, ids, err := s.Store.UnpublishedEventFacts(ctx, rec.EventIDs, leadCreated)
	require.NoError(t, err)
	stored, err := s.Store.GetRule(ctx, rule.ID)
	require.NoError(t, err)
	pending, err := s.Store.FanOut(ctx, ids, []models.TriggerDelivery{
		store.NewTriggerDelivery(stored, &facts[0].Event, "event:pending"),
	})
	require.NoError(t, err)

	var out errorBody
	status := s.Call(t, http.MethodPost, fmt.Sprintf("/api/deliveries/%d/resend", pending[0].ID), nil, &out)
	assert.Equal(t, http.StatusConflict, status)
	assert.Equal(t, "delivery_in_progress", out.Error.Code)
}

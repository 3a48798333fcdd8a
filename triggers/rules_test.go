package triggers_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/egress"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/triggers"
)

func ptr[T any](v T) *T { return &v }

func validRule() models.TriggerRule {
	return models.TriggerRule{
		Name:   "Partner transfer",
		Event:  models.EventCallScored,
		URL:    "https://partner.example.org/leads",
		Secret: triggers.NewSecret(),
	}
}

func TestValidate(t *testing.T) {
	guard := egress.NewGuard(nil)
	require.Nil(t, triggers.Validate(ptr(validRule()), guard), "the valid rule passes")

	cases := []struct {
		name   string
		change func(*models.TriggerRule)
		field  string
		why    string
	}{
		{"no name", func(r *models.TriggerRule) { r.Name = " " },
			"name", "is required"},
		{"long name", func(r *models.TriggerRule) { r.Name = strings.Repeat("x", 201) },
			"name", "at most 200"},
		{"no event", func(r *models.TriggerRule) { r.Event = "" },
			"event", "is required"},
		{"unknown event", func(r *models.TriggerRule) { r.Event = "call.rang" },
			"event", "must be one of lead.created"},
		{"rating of zero", func(r *models.TriggerRule) { r.Conditions.MinStarRating = ptr(0) },
			"conditions.min_star_rating", "between 1 and 5"},
		{"rating of six", func(r *models.TriggerRule) { r.Conditions.MinStarRating = ptr(6) },
			"conditions.min_star_rating", "between 1 and 5"},
		{"unknown direction", func(r *models.TriggerRule) { r.Conditions.Direction = "sideways" },
			"conditions.direction", "must be one of inbound"},
		{"empty source", func(r *models.TriggerRule) { r.Conditions.Sources = []string{"Google Ads", ""} },
			"conditions.sources", "empty"},
		{"too many tags", func(r *models.TriggerRule) { r.Conditions.Tags = make([]string, 51) },
			"conditions.tags", "at most 50"},
		{"no URL", func(r *models.TriggerRule) { r.URL = "" },
			"destination.url", "is required"},
		{"relative URL", func(r *models.TriggerRule) { r.URL = "/leads" },
			"destination.url", "http:// or https://"},
		{"ftp URL", func(r *models.TriggerRule) { r.URL = "ftp://example.org/x" },
			"destination.url", "http:// or https://"},
		{"URL without host", func(r *models.TriggerRule) { r.URL = "https:///leads" },
			"destination.url", "must name a host"},
		{"URL with credentials", func(r *models.TriggerRule) { r.URL = "https://u:p@example.org/" },
			"destination.url", "user name or password"},
		{"loopback URL", func(r *models.TriggerRule) { r.URL = "http://127.0.0.1:9000/hook" },
			"destination.url", "OUTBOUND_ALLOWLIST"},
		{"metadata URL", func(r *models.TriggerRule) { r.URL = "http://169.254.169.254/latest/meta-data/" },
			"destination.url", "private or reserved"},
		{"mapped metadata URL", func(r *models.TriggerRule) { r.URL = "http://[::ffff:a9fe:a9fe]/" },
			"destination.url", "private or reserved"},
		{"secret without prefix", func(r *models.TriggerRule) { r.Secret = "hunter2hunter2hunter2hunter2" },
			"destination.secret", "whsec_"},
		{"negative rate limit", func(r *models.TriggerRule) { r.RateLimit = -1 },
			"destination.rate_limit_per_second", "between 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := validRule()
			tc.change(&r)
			bad := triggers.Validate(&r, guard)
			require.Contains(t, bad, tc.field, "got %v, want %s named", bad, tc.field)
			assert.Contains(t, bad[tc.field], tc.why)
			assert.Len(t, bad, 1, "got %v, want only %s", bad, tc.field)
		})
	}

	t.Run("allowlisted private URL", func(t *testing.T) {
		r := validRule()
		r.URL = "http://127.0.0.1:9000/hook"
		allow := egress.NewGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})
		assert.Nil(t, triggers.Validate(&r, allow))
	})
}

// facts builds an event's facts in memory: a scored inbound call from
// Google Ads, tagged and rated 4.
func facts(typ string) *store.EventFacts {
	callID := int64(30)
	return &store.EventFacts{
		Event: models.LeadEvent{ID: 100, LeadID: 7, CallID: &callID, Type: typ,
			Data: map[string]any{"star_rating": float64(4)}},
		Lead: models.Lead{ID: 7, Source: "Google Ads"},
		Call: &models.Call{ID: callID, LeadID: 7, Direction: "inbound", Source: "Google Ads",
			TrackingLabel: "Detox line", Tags: []string{"insurance", "Inpatient"}, StarRating: ptr(4)},
	}
}

func TestMatch(t *testing.T) {
	first := func() (bool, error) { return true, nil }
	repeat := func() (bool, error) { return false, nil }
	cases := []struct {
		name  string
		rule  func(*models.TriggerRule)
		facts func(*store.EventFacts)
		ask   func() (bool, error)
		want  bool
	}{
		{name: "no conditions", want: true},
		{name: "other event type", rule: func(r *models.TriggerRule) { r.Event = models.EventCallEnded }},
		{name: "disabled rule", rule: func(r *models.TriggerRule) { r.DisabledAt = ptr(t0) }},
		{name: "event older than the rule", rule: func(r *models.TriggerRule) { r.AfterEventID = 100 }},
		{name: "rating reaches the minimum", rule: minRating(4), want: true},
		{name: "rating below the minimum", rule: minRating(5)},
		{name: "rating from the event, not the call", rule: minRating(5),
			facts: func(f *store.EventFacts) { f.Call.StarRating = ptr(5) }},
		{name: "unscored call", rule: minRating(1),
			facts: func(f *store.EventFacts) {
				f.Event.Type = models.EventCallEnded
				f.Event.Data = nil
				f.Call.StarRating = nil
			},
			want: false},
		{name: "direction matches", rule: direction("inbound"), want: true},
		{name: "direction differs", rule: direction("outbound")},
		{name: "source matches without case", rule: sources("google ads"), want: true},
		{name: "tracking label matches", rule: sources("Detox line"), want: true},
		{name: "no source matches", rule: sources("Bing", "Facebook")},
		{name: "one tag of several", rule: tags("vip", "inpatient"), want: true},
		{name: "no tag matches", rule: tags("vip")},
		{name: "tags on an event without a call", rule: tags("insurance"),
			facts: func(f *store.EventFacts) { f.Call = nil }},
		{name: "first-time caller", rule: firstTime(true), ask: first, want: true},
		{name: "repeat caller wanted, first-timer came", rule: firstTime(false), ask: first},
		{name: "repeat caller", rule: firstTime(false), ask: repeat, want: true},
		{name: "CTM knows an earlier call", rule: firstTime(true), ask: first,
			facts: func(f *store.EventFacts) { f.Call.IsNewCaller = ptr(false) }},
		{name: "lead.created is a first contact", rule: func(r *models.TriggerRule) {
			r.Event = models.EventLeadCreated
			r.Conditions.FirstTimeCaller = ptr(true)
		}, facts: func(f *store.EventFacts) { f.Event.Type = models.EventLeadCreated }, ask: repeat, want: true},
		{name: "all conditions together", rule: func(r *models.TriggerRule) {
			minRating(3)(r)
			sources("Google Ads")(r)
			tags("insurance")(r)
			r.Conditions.Direction = "inbound"
		}, want: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := models.TriggerRule{ID: 1, Event: models.EventCallScored, AfterEventID: 99}
			if tc.rule != nil {
				tc.rule(&r)
			}
			f := facts(models.EventCallScored)
			if tc.facts != nil {
				tc.facts(f)
			}
			ask := tc.ask
			if ask == nil {
				ask = func() (bool, error) { return false, errors.New("not asked for") }
			}
			got, err := triggers.Match(&r, f, ask)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func minRating(n int) func(*models.TriggerRule) {
	return func(r *models.TriggerRule) { r.Conditions.MinStarRating = &n }
}

func direction(d string) func(*models.TriggerRule) {
	return func(r *models.TriggerRule) { r.Conditions.Direction = d }
}

func sources(s ...string) func(*models.TriggerRule) {
	return func(r *models.TriggerRule) { r.Conditions.Sources = s }
}

func tags(s ...string) func(*models.TriggerRule) {
	return func(r *models.TriggerRule) { r.Conditions.Tags = s }
}

func firstTime(b bool) func(*models.TriggerRule) {
	return func(r *models.TriggerRule) { r.Conditions.FirstTimeCaller = &b }
}

func TestDedupeKey(t *testing.T) {
	call := int64(30)
	scored := models.LeadEvent{ID: 5, Type: models.EventCallScored, CallID: &call}
	ended := models.LeadEvent{ID: 6, Type: models.EventCallEnded, CallID: &call}
	assert.Equal(t, "call:30", triggers.DedupeKey(&scored), "one call.scored delivery per call")
	assert.Equal(t, "event:6", triggers.DedupeKey(&ended))
}

package triggers_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/triggers"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var t0 = time.Date(2026, 11, 2, 15, 4, 0, 0, time.UTC)

func goldenLead() models.Lead {
	return models.Lead{
		ID: 7, AccountID: 1001, Phone: ptr("+12395550171"), Name: "Jordan Avery",
		Email: "jordan@example.org", City: "Fort Myers", State: "FL", Country: "US",
		PostalCode: "33901", Source: "Google Ads", Medium: "cpc", Campaign: "detox-florida",
		CreatedAt: t0,
	}
}

func goldenCall() *models.Call {
	ended := t0.Add(312 * time.Second)
	return &models.Call{
		ID: 30, CTMCallID: 5501, AccountID: 1001, LeadID: 7, Direction: "inbound",
		Stage: models.StageEnded, Status: "answered", TrackingNumber: "+18005550100",
		TrackingLabel: "Google Ads - Detox", Source: "Google Ads", Medium: "cpc",
		Campaign: "detox-florida", Keyword: "alcohol detox near me", IsNewCaller: ptr(true),
		DurationSeconds: 312, TalkTimeSeconds: 297, AgentID: "U-1001", AgentName: "Dana Whitfield",
		AgentEmail: "dana@example.org", StarRating: ptr(5), Conversion: ptr(true),
		Tags: []string{"insurance", "inpatient"}, Summary: "Caller asked about inpatient treatment.",
		// Never in a payload: the transcript and the recording link.
		Transcript:   "Agent: Thank you for calling Harbor Recovery.",
		RecordingURL: "https://api.calltrackingmetrics.com/api/v1/accounts/1001/calls/5501/recording",
		StartedAt:    ptr(t0), EndedAt: &ended,
	}
}

func TestPayloadGolden(t *testing.T) {
	rule := &models.TriggerRule{ID: 3, Name: "Partner: 4 stars and up"}
	callID, msgID := int64(30), int64(12)
	cases := map[string]*store.EventFacts{
		"call_scored": {
			Event: models.LeadEvent{ID: 42, LeadID: 7, CallID: &callID, Type: models.EventCallScored,
				OccurredAt: t0.Add(9 * time.Minute),
				Data:       map[string]any{"star_rating": float64(5), "ctm_call_id": float64(5501)}},
			Lead: goldenLead(),
			Call: goldenCall(),
		},
		"lead_created_ringing": {
			Event: models.LeadEvent{ID: 40, LeadID: 7, CallID: &callID, Type: models.EventLeadCreated,
				OccurredAt: t0, Data: map[string]any{"via": "call", "ctm_call_id": float64(5501)}},
			Lead: goldenLead(),
			Call: &models.Call{ID: 30, CTMCallID: 5501, AccountID: 1001, LeadID: 7, Direction: "inbound",
				Stage: models.StageStarted, TrackingLabel: "Google Ads - Detox", Source: "Google Ads",
				StartedAt: ptr(t0)},
		},
		"message_received": {
			Event: models.LeadEvent{ID: 45, LeadID: 7, MessageID: &msgID, Type: models.EventMessageReceived,
				OccurredAt: t0.Add(time.Hour),
				Data:       map[string]any{"ctm_message_id": float64(8801), "direction": "msg_inbound"}},
			Lead: goldenLead(),
			Message: &models.Message{ID: msgID, AccountID: 1001, CTMMessageID: 8801, LeadID: 7,
				Direction: "msg_inbound", Body: "Hi, is there a bed available this week?", SentAt: t0.Add(time.Hour)},
		},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			body, err := triggers.BuildPayload(rule, f)
			require.NoError(t, err)
			assert.NotContains(t, string(body), "Harbor Recovery", "no transcript in a payload")
			assert.NotContains(t, string(body), "/recording", "no recording link in a payload")

			var pretty bytes.Buffer
			require.NoError(t, json.Indent(&pretty, body, "", "  "))
			pretty.WriteByte('\n')
			path := filepath.Join("testdata", "payload_"+name+".json")
			if *update {
				require.NoError(t, os.WriteFile(path, pretty.Bytes(), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "golden file missing; run go test ./triggers -update")
			assert.Equal(t, string(want), pretty.String())
		})
	}
}

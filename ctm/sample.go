package ctm

import (
	"encoding/json"
	"fmt"
	"time"
)

// Sample describes a fictional call, for `ctmflow send`, tests and
// benchmarks. Its bodies have the shape and field names of CTM's own.
type Sample struct {
	AccountID int64
	CallID    int64
	// Phone is the caller's number in E.164.
	Phone string
	Name  string
	// Start is when the call began; zero means now.
	Start time.Time
	// Rating is the star rating the update carries (1–5); 0 means 4.
	Rating int
}

// SampleTranscript is the fictional transcript sample end bodies carry.
const SampleTranscript = "Agent: Thank you for calling Harbor Recovery, this is Dana. " +
	"Caller: Hi, I'm calling about inpatient treatment for my brother. " +
	"Agent: I can help with that. Does he have insurance? " +
	"Caller: Yes, through his employer. " +
	"Agent: Great, let me take a few details and check his benefits."

func (s Sample) base() map[string]any {
	start := s.Start
	if start.IsZero() {
		start = time.Now()
	}
	name := s.Name
	if name == "" {
		name = "Jordan Avery"
	}
	return map[string]any{
		"id":                   s.CallID,
		"sid":                  fmt.Sprintf("CA%032d", s.CallID),
		"account_id":           s.AccountID,
		"direction":            "inbound",
		"caller_number":        s.Phone,
		"caller_number_bare":   s.Phone,
		"name":                 name,
		"cnam":                 "WIRELESS CALLER",
		"tracking_number":      "+18005550100",
		"tracking_label":       "Google Ads - Detox",
		"source":               "Google Ads",
		"medium":               "cpc",
		"campaign":             "detox-florida",
		"keyword":              "alcohol detox near me",
		"referrer":             "https://www.google.com/",
		"city":                 "Fort Myers",
		"state":                "FL",
		"country":              "US",
		"postal_code":          "33901",
		"is_new_caller":        true,
		"unix_time":            start.Unix(),
		"called_at":            start.Format("2006-01-02 03:04 PM -07:00"),
		"dial_status":          "ringing",
		"tag_list":             []string{},
		"custom_fields":        map[string]any{},
		"caller_number_format": s.Phone,
	}
}

// StartBody is the call-start webhook: the call is still ringing.
func (s Sample) StartBody() []byte {
	return mustJSON(s.base())
}

// EndBody is the call-end webhook, with duration, agent, recording,
// transcript and AI summary.
func (s Sample) EndBody() []byte {
	b := s.base()
	b["dial_status"] = "answered"
	b["call_status"] = "answered"
	b["status"] = "answered"
	b["duration"] = 312
	b["talk_time"] = 297
	b["ring_time"] = 15
	b["hold_time"] = 0
	b["agent"] = map[string]any{"id": "U-1001", "name": "Dana Whitfield", "email": "dana@example.org"}
	b["audio"] = fmt.Sprintf("https://api.calltrackingmetrics.com/api/v1/accounts/%d/calls/%d/recording",
		s.AccountID, s.CallID)
	b["transcription_text"] = SampleTranscript
	b["summary"] = "Caller asked about inpatient treatment for a sibling with employer insurance; " +
		"agent started a benefits check."
	b["tag_list"] = []string{"insurance", "inpatient"}
	b["notes"] = ""
	return mustJSON(b)
}

// UpdateBody is a later update of the ended call: CTM posts the whole call
// object again, now scored.
func (s Sample) UpdateBody() []byte {
	var b map[string]any
	if err := json.Unmarshal(s.EndBody(), &b); err != nil {
		panic(err)
	}
	rating := s.Rating
	if rating == 0 {
		rating = 4
	}
	b["sale"] = map[string]any{
		"score":      rating,
		"conversion": rating >= 4,
		"value":      0,
		"name":       "Qualified lead",
	}
	b["tag_list"] = []string{"insurance", "inpatient", "qualified"}
	return mustJSON(b)
}

// TextBody is an inbound text message from the same person.
func (s Sample) TextBody() []byte {
	b := s.base()
	b["direction"] = DirectionMsgInbound
	b["message_body"] = "Hi, is there a bed available this week?"
	delete(b, "dial_status")
	return mustJSON(b)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encoding sample: %v", err))
	}
	return b
}

package triggers

import (
	"encoding/json"
	"time"

	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
)

// Payload is the JSON body of every trigger request, in the envelope
// Standard Webhooks recommends: the event type, when it happened, and the
// data. Its shape is documented in the README and pinned by golden files
// in testdata/; change it only additively.
type Payload struct {
	// Type is the lead event type, e.g. call.scored.
	Type string `json:"type"`
	// Timestamp is when the event happened (the same as
	// Data.OccurredAt).
	Timestamp time.Time   `json:"timestamp"`
	Data      PayloadData `json:"data"`
}

// PayloadData is what a receiver acts on.
type PayloadData struct {
	EventID    int64       `json:"event_id"`
	OccurredAt time.Time   `json:"occurred_at"`
	LeadID     int64       `json:"lead_id"`
	Rule       PayloadRule `json:"rule"`
	Lead       PayloadLead `json:"lead"`
	// Call is the event's call, null for events without one.
	Call *PayloadCall `json:"call"`
	// Message is the event's text message, null for events without one.
	Message *PayloadMessage `json:"message"`
	// Details are the event's own facts (the rating a call.scored event
	// carries, the status a call ended with).
	Details map[string]any `json:"details"`
}

// PayloadRule names the rule that fired.
type PayloadRule struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// PayloadLead is the lead as it stands when the request is built.
type PayloadLead struct {
	ID         int64     `json:"id"`
	AccountID  int64     `json:"account_id"`
	Phone      *string   `json:"phone"`
	Name       string    `json:"name"`
	Email      string    `json:"email"`
	City       string    `json:"city"`
	State      string    `json:"state"`
	Country    string    `json:"country"`
	PostalCode string    `json:"postal_code"`
	Source     string    `json:"source"`
	Medium     string    `json:"medium"`
	Campaign   string    `json:"campaign"`
	CreatedAt  time.Time `json:"created_at"`
}

// PayloadCall summarises a call. The transcript and the recording link
// stay out: a receiver gets the minimum it needs, and can read the rest
// from the API with a token.
type PayloadCall struct {
	ID              int64         `json:"id"`
	CTMCallID       int64         `json:"ctm_call_id"`
	AccountID       int64         `json:"account_id"`
	Direction       string        `json:"direction"`
	Stage           string        `json:"stage"`
	Status          string        `json:"status"`
	TrackingNumber  string        `json:"tracking_number"`
	TrackingLabel   string        `json:"tracking_label"`
	Source          string        `json:"source"`
	Medium          string        `json:"medium"`
	Campaign        string        `json:"campaign"`
	Keyword         string        `json:"keyword"`
	IsNewCaller     *bool         `json:"is_new_caller"`
	DurationSeconds int           `json:"duration_seconds"`
	TalkTimeSeconds int           `json:"talk_time_seconds"`
	Agent           *PayloadAgent `json:"agent"`
	StarRating      *int          `json:"star_rating"`
	Conversion      *bool         `json:"conversion"`
	Tags            []string      `json:"tags"`
	Summary         string        `json:"summary"`
	StartedAt       *time.Time    `json:"started_at"`
	EndedAt         *time.Time    `json:"ended_at"`
}

// PayloadAgent is who took the call.
type PayloadAgent struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

// PayloadMessage is a text message.
type PayloadMessage struct {
	ID           int64     `json:"id"`
	CTMMessageID int64     `json:"ctm_message_id"`
	Direction    string    `json:"direction"`
	Body         string    `json:"body"`
	SentAt       time.Time `json:"sent_at"`
}

// BuildPayload renders the request body for rule and the event's facts.
// The result holds PHI: it goes on the wire and nowhere else.
func BuildPayload(rule *models.TriggerRule, f *store.EventFacts) ([]byte, error) {
	ev := f.Event
	p := Payload{
		Type:      ev.Type,
		Timestamp: ev.OccurredAt.UTC(),
		Data: PayloadData{
			EventID:    ev.ID,
			OccurredAt: ev.OccurredAt.UTC(),
			LeadID:     ev.LeadID,
			Rule:       PayloadRule{ID: rule.ID, Name: rule.Name},
			Lead:       newPayloadLead(&f.Lead),
			Details:    ev.Data,
		},
	}
	if p.Data.Details == nil {
		p.Data.Details = map[string]any{}
	}
	if f.Call != nil {
		p.Data.Call = newPayloadCall(f.Call)
	}
	if m := f.Message; m != nil {
		p.Data.Message = &PayloadMessage{
			ID:           m.ID,
			CTMMessageID: m.CTMMessageID,
			Direction:    m.Direction,
			Body:         m.Body,
			SentAt:       m.SentAt.UTC(),
		}
	}
	return json.Marshal(p)
}

func newPayloadLead(l *models.Lead) PayloadLead {
	return PayloadLead{
		ID:         l.ID,
		AccountID:  l.AccountID,
		Phone:      l.Phone,
		Name:       l.Name,
		Email:      l.Email,
		City:       l.City,
		State:      l.State,
		Country:    l.Country,
		PostalCode: l.PostalCode,
		Source:     l.Source,
		Medium:     l.Medium,
		Campaign:   l.Campaign,
		CreatedAt:  l.CreatedAt.UTC(),
	}
}

func newPayloadCall(c *models.Call) *PayloadCall {
	out := &PayloadCall{
		ID:              c.ID,
		CTMCallID:       c.CTMCallID,
		AccountID:       c.AccountID,
		Direction:       c.Direction,
		Stage:           c.Stage,
		Status:          c.Status,
		TrackingNumber:  c.TrackingNumber,
		TrackingLabel:   c.TrackingLabel,
		Source:          c.Source,
		Medium:          c.Medium,
		Campaign:        c.Campaign,
		Keyword:         c.Keyword,
		IsNewCaller:     c.IsNewCaller,
		DurationSeconds: c.DurationSeconds,
		TalkTimeSeconds: c.TalkTimeSeconds,
		StarRating:      c.StarRating,
		Conversion:      c.Conversion,
		Tags:            c.Tags,
		Summary:         c.Summary,
		StartedAt:       utc(c.StartedAt),
		EndedAt:         utc(c.EndedAt),
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if c.AgentID != "" || c.AgentName != "" || c.AgentEmail != "" {
		out.Agent = &PayloadAgent{ID: c.AgentID, Name: c.AgentName, Email: c.AgentEmail}
	}
	return out
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

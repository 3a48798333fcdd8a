package api

import (
	"time"

	"github.com/ctmflow/ctmflow/models"
)

// LeadList is the body of GET /api/leads. Next, when non-zero, is the
// ?after= value of the following page.
type LeadList struct {
	Leads []Lead `json:"leads"`
	Next  int64  `json:"next,omitempty"`
}

// Lead is a lead as the API shows it.
type Lead struct {
	ID         int64                         `json:"id"`
	AccountID  int64                         `json:"account_id"`
	Phone      *string                       `json:"phone"`
	Name       string                        `json:"name"`
	Email      string                        `json:"email"`
	City       string                        `json:"city"`
	State      string                        `json:"state"`
	Country    string                        `json:"country"`
	PostalCode string                        `json:"postal_code"`
	Source     string                        `json:"source"`
	Medium     string                        `json:"medium"`
	Campaign   string                        `json:"campaign"`
	Provenance map[string]models.FieldOrigin `json:"provenance"`
	CreatedAt  time.Time                     `json:"created_at"`
	UpdatedAt  time.Time                     `json:"updated_at"`
	Calls      []Call                        `json:"calls"`
	Events     []Event                       `json:"events"`
}

// Call is a call as the API shows it.
type Call struct {
	ID              int64          `json:"id"`
	CTMCallID       int64          `json:"ctm_call_id"`
	AccountID       int64          `json:"account_id"`
	SID             string         `json:"sid"`
	Direction       string         `json:"direction"`
	Stage           string         `json:"stage"`
	Status          string         `json:"status"`
	DialStatus      string         `json:"dial_status"`
	CallerNumber    string         `json:"caller_number"`
	CallerName      string         `json:"caller_name"`
	TrackingNumber  string         `json:"tracking_number"`
	TrackingLabel   string         `json:"tracking_label"`
	Source          string         `json:"source"`
	Medium          string         `json:"medium"`
	Campaign        string         `json:"campaign"`
	Keyword         string         `json:"keyword"`
	IsNewCaller     *bool          `json:"is_new_caller"`
	DurationSeconds int            `json:"duration_seconds"`
	TalkTimeSeconds int            `json:"talk_time_seconds"`
	RingTimeSeconds int            `json:"ring_time_seconds"`
	HoldTimeSeconds int            `json:"hold_time_seconds"`
	Agent           *Agent         `json:"agent"`
	RecordingURL    string         `json:"recording_url"`
	Transcript      string         `json:"transcript"`
	Summary         string         `json:"summary"`
	StarRating      *int           `json:"star_rating"`
	Conversion      *bool          `json:"conversion"`
	SaleValue       *float64       `json:"sale_value"`
	Tags            []string       `json:"tags"`
	Notes           string         `json:"notes"`
	CustomFields    map[string]any `json:"custom_fields"`
	StartedAt       *time.Time     `json:"started_at"`
	EndedAt         *time.Time     `json:"ended_at"`
	CreatedAt       time.Time      `json:"created_at"`
	UpdatedAt       time.Time      `json:"updated_at"`
}

// Agent is who took a call.
type Agent struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

// Event is one entry of a lead's timeline.
type Event struct {
	ID         int64          `json:"id"`
	Type       string         `json:"type"`
	CallID     *int64         `json:"call_id"`
	MessageID  *int64         `json:"message_id"`
	OccurredAt time.Time      `json:"occurred_at"`
	Data       map[string]any `json:"data"`
}

// NewLead renders a lead with its calls and events.
func NewLead(l *models.Lead) Lead {
	out := Lead{
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
		Provenance: l.Provenance,
		CreatedAt:  l.CreatedAt.UTC(),
		UpdatedAt:  l.UpdatedAt.UTC(),
		Calls:      make([]Call, 0, len(l.Calls)),
		Events:     make([]Event, 0, len(l.Events)),
	}
	if out.Provenance == nil {
		out.Provenance = map[string]models.FieldOrigin{}
	}
	for i := range l.Calls {
		out.Calls = append(out.Calls, NewCall(&l.Calls[i]))
	}
	for _, e := range l.Events {
		out.Events = append(out.Events, Event{
			ID:         e.ID,
			Type:       e.Type,
			CallID:     e.CallID,
			MessageID:  e.MessageID,
			OccurredAt: e.OccurredAt.UTC(),
			Data:       e.Data,
		})
	}
	return out
}

// NewCall renders a call.
func NewCall(c *models.Call) Call {
	out := Call{
		ID:              c.ID,
		CTMCallID:       c.CTMCallID,
		AccountID:       c.AccountID,
		SID:             c.SID,
		Direction:       c.Direction,
		Stage:           c.Stage,
		Status:          c.Status,
		DialStatus:      c.DialStatus,
		CallerNumber:    c.CallerNumber,
		CallerName:      c.CallerName,
		TrackingNumber:  c.TrackingNumber,
		TrackingLabel:   c.TrackingLabel,
		Source:          c.Source,
		Medium:          c.Medium,
		Campaign:        c.Campaign,
		Keyword:         c.Keyword,
		IsNewCaller:     c.IsNewCaller,
		DurationSeconds: c.DurationSeconds,
		TalkTimeSeconds: c.TalkTimeSeconds,
		RingTimeSeconds: c.RingTimeSeconds,
		HoldTimeSeconds: c.HoldTimeSeconds,
		RecordingURL:    c.RecordingURL,
		Transcript:      c.Transcript,
		Summary:         c.Summary,
		StarRating:      c.StarRating,
		Conversion:      c.Conversion,
		SaleValue:       c.SaleValue,
		Tags:            c.Tags,
		Notes:           c.Notes,
		CustomFields:    c.CustomFields,
		StartedAt:       utc(c.StartedAt),
		EndedAt:         utc(c.EndedAt),
		CreatedAt:       c.CreatedAt.UTC(),
		UpdatedAt:       c.UpdatedAt.UTC(),
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if c.AgentID != "" || c.AgentName != "" || c.AgentEmail != "" {
		out.Agent = &Agent{ID: c.AgentID, Name: c.AgentName, Email: c.AgentEmail}
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

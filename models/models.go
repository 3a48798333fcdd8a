// Package models holds the CRM's persistent records: leads, the calls and
// text messages attached to them, each lead's event timeline, and the inbox
// of raw CTM deliveries. The structs are gorm models; their unique indexes
// are what make every write idempotent.
package models

import "time"

// Lead is one person who contacted a treatment centre through CTM. There is
// exactly one lead per caller number per CTM account; a caller who withholds
// the number gets a lead of their own per call (Phone is nil).
type Lead struct {
	ID        int64   `gorm:"primaryKey"`
	AccountID int64   `gorm:"not null;uniqueIndex:ux_leads_account_phone,priority:1"`
	Phone     *string `gorm:"size:20;uniqueIndex:ux_leads_account_phone,priority:2"`

	Name       string `gorm:"size:200;not null;default:''"`
	Email      string `gorm:"size:320;not null;default:''"`
	City       string `gorm:"size:100;not null;default:''"`
	State      string `gorm:"size:100;not null;default:''"`
	Country    string `gorm:"size:100;not null;default:''"`
	PostalCode string `gorm:"size:20;not null;default:''"`

	// Source, Medium and Campaign are the lead's first-touch attribution.
	Source   string `gorm:"size:200;not null;default:''"`
	Medium   string `gorm:"size:200;not null;default:''"`
	Campaign string `gorm:"size:200;not null;default:''"`

	// Provenance records who set each field last; see FieldOrigin.
	Provenance map[string]FieldOrigin `gorm:"serializer:json;type:text"`

	CreatedAt time.Time `gorm:"not null;index"`
	UpdatedAt time.Time `gorm:"not null"`

	Calls  []Call      `gorm:"foreignKey:LeadID"`
	Events []LeadEvent `gorm:"foreignKey:LeadID"`
}

// LeadFields are the lead's own fields, by column, that CTM fills and
// staff may edit. The phone number is the lead's key and is handled apart.
var LeadFields = []string{
	"name", "email", "city", "state", "country", "postal_code",
	"source", "medium", "campaign",
}

// FieldOrigin says who last set a lead field and when. For a field CTM
// set, it also names the CTM data that set it, so that older data arriving
// late never overwrites newer (see store's lead rules).
type FieldOrigin struct {
	By string    `json:"by"` // OriginCTM or OriginStaff
	At time.Time `json:"at"`

	// CTMCallID is the CTM call (or message) whose data set the field.
	CTMCallID int64 `json:"ctm_call_id,omitempty"`
	// CallStartedAt is when that call started; of two calls, the later
	// one's data wins.
	CallStartedAt *time.Time `json:"call_started_at,omitempty"`
	// Version is the delivery's version (store.Version), which orders the
	// deliveries of one call.
	Version int64 `json:"version,omitempty"`
}

// Who set a lead field.
const (
	OriginCTM   = "ctm"
	OriginStaff = "staff"
)

// Call is one CTM call (or form, or chat) attached to a lead. It is keyed by
// CTM's account and activity id, so a call has one row however often CTM
// posts it.
type Call struct {
	ID        int64 `gorm:"primaryKey"`
	AccountID int64 `gorm:"not null;uniqueIndex:ux_calls_account_ctm,priority:1"`
	CTMCallID int64 `gorm:"column:ctm_call_id;not null;uniqueIndex:ux_calls_account_ctm,priority:2"`
	LeadID    int64 `gorm:"not null;index"`

	SID       string `gorm:"column:sid;size:64;not null;default:''"`
	Direction string `gorm:"size:20;not null;default:''"`

	// Stage is the furthest point of the lifecycle reached; StageRank orders
	// stages so that a late delivery can never move a call backwards.
	Stage     string `gorm:"size:20;not null;index"`
	StageRank int    `gorm:"not null;default:0"`

	CallerNumber   string `gorm:"size:20;not null;default:''"`
	CallerName     string `gorm:"size:200;not null;default:''"`
	TrackingNumber string `gorm:"size:20;not null;default:''"`
	TrackingLabel  string `gorm:"size:200;not null;default:''"`
	Source         string `gorm:"size:200;not null;default:''"`
	Medium         string `gorm:"size:200;not null;default:''"`
	Campaign       string `gorm:"size:200;not null;default:''"`
	Keyword        string `gorm:"size:200;not null;default:''"`
	Referrer       string `gorm:"size:2000;not null;default:''"`
	IsNewCaller    *bool

	DialStatus      string `gorm:"size:40;not null;default:''"`
	Status          string `gorm:"size:40;not null;default:''"`
	DurationSeconds int    `gorm:"not null;default:0"`
	TalkTimeSeconds int    `gorm:"not null;default:0"`
	RingTimeSeconds int    `gorm:"not null;default:0"`
	HoldTimeSeconds int    `gorm:"not null;default:0"`
	AgentID         string `gorm:"size:64;not null;default:''"`
	AgentName       string `gorm:"size:200;not null;default:''"`
	AgentEmail      string `gorm:"size:320;not null;default:''"`

	// RecordingURL is CTM's own URL for the audio, never the short-lived
	// storage link it redirects to.
	RecordingURL string `gorm:"size:2000;not null;default:''"`
	Transcript   string `gorm:"type:text;not null;default:''"`
	Summary      string `gorm:"type:text;not null;default:''"`

	StarRating   *int
	Conversion   *bool
	SaleValue    *float64
	Tags         []string       `gorm:"serializer:json;type:text"`
	Notes        string         `gorm:"type:text;not null;default:''"`
	CustomFields map[string]any `gorm:"serializer:json;type:text"`

	StartedAt *time.Time
	EndedAt   *time.Time

	// Versions of each group of fields, see store.Version: newer data
	// replaces a group, older data only fills its empty fields.
	CoreVersion       int64 `gorm:"not null;default:0"`
	RecordingVersion  int64 `gorm:"not null;default:0"`
	TranscriptVersion int64 `gorm:"not null;default:0"`
	OutcomeVersion    int64 `gorm:"not null;default:0"`

	CreatedAt time.Time `gorm:"not null"`
	UpdatedAt time.Time `gorm:"not null"`
}

// Call stages, in the order a call moves through them.
const (
	StageStarted = "started"
	// StageEndMissing marks a call whose end never arrived in time.
	StageEndMissing = "end_missing"
	StageEnded      = "ended"
)

// StageRanks orders the call stages; a call never moves to a lower rank.
var StageRanks = map[string]int{
	StageStarted:    1,
	StageEndMissing: 2,
	StageEnded:      3,
}

// Message is one text message CTM relayed, attached to the texter's lead.
type Message struct {
	ID           int64     `gorm:"primaryKey"`
	AccountID    int64     `gorm:"not null;uniqueIndex:ux_messages_account_ctm,priority:1"`
	CTMMessageID int64     `gorm:"column:ctm_message_id;not null;uniqueIndex:ux_messages_account_ctm,priority:2"`
	LeadID       int64     `gorm:"not null;index"`
	Direction    string    `gorm:"size:20;not null"`
	Body         string    `gorm:"type:text;not null;default:''"`
	SentAt       time.Time `gorm:"not null"`
	CreatedAt    time.Time `gorm:"not null"`
}

// LeadEvent is one entry of a lead's lifecycle timeline (lead.created,
// call.ended, transcript.ready, ...). Downstream triggers consume these.
// DedupeKey makes each fact recorded once however often it is observed.
type LeadEvent struct {
	ID         int64          `gorm:"primaryKey"`
	LeadID     int64          `gorm:"not null;index"`
	CallID     *int64         `gorm:"index"`
	MessageID  *int64         `gorm:"index"`
	Type       string         `gorm:"size:40;not null;index"`
	DedupeKey  string         `gorm:"size:120;not null;uniqueIndex"`
	OccurredAt time.Time      `gorm:"not null"`
	Data       map[string]any `gorm:"serializer:json;type:text"`
	// CreatedAt is when ctmflow recorded the event; OccurredAt is when it
	// happened, by CTM's clock.
	CreatedAt time.Time `gorm:"not null"`
	// PublishedAt is when the triggers took the event in: its deliveries
	// exist. Nil means a sweeper still has to publish it; the partial
	// index keeps that query cheap however long the timeline grows.
	PublishedAt *time.Time `gorm:"index:ix_lead_events_unpublished,where:published_at IS NULL"`
}

// Lead event types.
const (
	EventLeadCreated      = "lead.created"
	EventCallStarted      = "call.started"
	EventCallEnded        = "call.ended"
	EventCallEndMissing   = "call.end_missing"
	EventRecordingReady   = "recording.ready"
	EventTranscriptReady  = "transcript.ready"
	EventCallScored       = "call.scored"
	EventMessageReceived  = "message.received"
	EventMessageSent      = "message.sent"
	EventLeadStaffUpdated = "lead.updated"
)

// Delivery is one CTM webhook as it arrived: the raw body and headers,
// stored before CTM gets its answer so that nothing acknowledged is lost.
// The relay hands it to its workflow; the workflow marks it processed.
type Delivery struct {
	ID        int64  `gorm:"primaryKey"`
	AccountID int64  `gorm:"not null;uniqueIndex:ux_deliveries_dedupe,priority:1"`
	Kind      string `gorm:"size:20;not null;uniqueIndex:ux_deliveries_dedupe,priority:2"`
	// BodySHA256 recognises a redelivery of the same webhook.
	BodySHA256 string `gorm:"column:body_sha256;size:64;not null;uniqueIndex:ux_deliveries_dedupe,priority:3"`
	CTMID      int64  `gorm:"column:ctm_id;not null;index"`
	// Body is the raw request body; nil once purged after retention.
	Body       []byte
	CTMTime    string    `gorm:"column:ctm_time;size:40;not null;default:''"`
	ReceivedAt time.Time `gorm:"not null"`

	Status        string    `gorm:"size:20;not null;index:ix_deliveries_due,priority:1"`
	NextAttemptAt time.Time `gorm:"not null;index:ix_deliveries_due,priority:2"`
	Attempts      int       `gorm:"not null;default:0"`
	LastError     string    `gorm:"size:500;not null;default:''"`
	LeaseOwner    string    `gorm:"size:64;not null;default:''"`
	LeaseUntil    *time.Time

	DispatchedAt *time.Time
	ProcessedAt  *time.Time `gorm:"index"`
	PurgedAt     *time.Time
}

// Delivery kinds, one per webhook path.
const (
	KindCallStart   = "call-start"
	KindCallEnd     = "call-end"
	KindCallUpdate  = "call-update"
	KindTextMessage = "text-message"
)

// Kinds lists the delivery kinds in lifecycle order.
var Kinds = []string{KindCallStart, KindCallEnd, KindCallUpdate, KindTextMessage}

// Delivery states.
const (
	DeliveryPending    = "pending"
	DeliveryDispatched = "dispatched"
)

// All lists every model, in an order that migrations can follow.
func All() []any {
	return []any{
		&Lead{}, &Call{}, &Message{}, &LeadEvent{}, &Delivery{},
		&TriggerRule{}, &TriggerDelivery{}, &TriggerThrottle{},
	}
}

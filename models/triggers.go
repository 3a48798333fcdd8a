package models

import "time"

// TriggerRule sends one type of lead event, when its conditions hold, to
// a destination URL: a live-transfer dialer, a partner buying leads, a
// text-message service.
type TriggerRule struct {
	ID         int64             `gorm:"primaryKey"`
	Name       string            `gorm:"size:200;not null"`
	Event      string            `gorm:"size:40;not null;index"`
	Conditions TriggerConditions `gorm:"serializer:json;type:text"`

	// URL is the destination; it receives one signed POST per delivery.
	URL string `gorm:"size:2000;not null"`
	// Secret signs the requests, "whsec_" and base64 as Standard Webhooks
	// has it. PreviousSecret, until PreviousSecretUntil, signs them too,
	// so that a receiver can switch secrets without losing a request.
	Secret              string `gorm:"size:200;not null"`
	PreviousSecret      string `gorm:"size:200;not null;default:''"`
	PreviousSecretUntil *time.Time
	// RateLimit caps requests to the destination, per second (the API's
	// rate_limit_per_second); 0 means no cap. Carriers block bursts of texts to one number, so a rule that
	// makes a text service write to a caller wants 1.
	RateLimit float64 `gorm:"not null;default:0"`

	// AfterEventID is the newest lead event when the rule was created: a
	// rule fires for what happens after it exists, never for history.
	AfterEventID int64 `gorm:"not null;default:0"`

	// DisabledAt, when set, stops the rule firing: staff turned it off, or
	// the destination answered 410 Gone. DisabledReason says which.
	DisabledAt     *time.Time
	DisabledReason string `gorm:"size:200;not null;default:''"`

	CreatedAt time.Time `gorm:"not null"`
	UpdatedAt time.Time `gorm:"not null"`
}

// Enabled says whether the rule fires.
func (r *TriggerRule) Enabled() bool { return r.DisabledAt == nil }

// TriggerConditions narrow the events a rule fires for. Every condition
// set must hold; an unset one holds always.
type TriggerConditions struct {
	// MinStarRating (1–5) needs the call's star rating to reach it.
	MinStarRating *int `json:"min_star_rating,omitempty"`
	// Direction is the call's or message's direction as CTM spells it
	// (inbound, outbound, msg_inbound, ...).
	Direction string `json:"direction,omitempty"`
	// Sources needs the tracking source or tracking label to be one of
	// them, compared without case.
	Sources []string `json:"sources,omitempty"`
	// Tags needs the call to carry at least one of them.
	Tags []string `json:"tags,omitempty"`
	// FirstTimeCaller, when set, needs the event's call or message to be
	// the lead's first contact (true) or a repeat (false).
	FirstTimeCaller *bool `json:"first_time_caller,omitempty"`
}

// TriggerDelivery is one lead event on its way to one rule's destination,
// and the log of how that went. Its unique key makes fan-out idempotent:
// a rule gets an event once however often the event is published, and a
// call.scored rule gets one delivery per call however often the call is
// scored.
type TriggerDelivery struct {
	ID        int64  `gorm:"primaryKey"`
	RuleID    int64  `gorm:"not null;uniqueIndex:ux_trigger_deliveries_key,priority:1;index"`
	DedupeKey string `gorm:"size:120;not null;uniqueIndex:ux_trigger_deliveries_key,priority:2"`
	// WebhookID is the Standard Webhooks message id, the same for every
	// retry and resend, so that a receiver can drop repeats.
	WebhookID string `gorm:"size:64;not null"`
	EventID   int64  `gorm:"not null;index"`
	EventType string `gorm:"size:40;not null"`
	LeadID    int64  `gorm:"not null;index"`

	Status string `gorm:"size:20;not null;index"`
	// Resends counts manual resends; each runs a new workflow.
	Resends int `gorm:"not null;default:0"`
	// DispatchedAt is when the current run's workflow was started; nil
	// means a sweeper still has to start it.
	DispatchedAt *time.Time

	// Attempts counts requests made, over every run.
	Attempts       int `gorm:"not null;default:0"`
	LastStatusCode int `gorm:"not null;default:0"`
	// LastError says why the last attempt failed. It never holds the
	// payload or the destination's answer, which may echo it.
	LastError     string `gorm:"size:500;not null;default:''"`
	LastAttemptAt *time.Time
	DeliveredAt   *time.Time

	CreatedAt time.Time `gorm:"not null"`
	UpdatedAt time.Time `gorm:"not null"`
}

// Trigger delivery states.
const (
	// TriggerPending: not attempted yet in its current run.
	TriggerPending = "pending"
	// TriggerRetrying: an attempt failed; more will follow.
	TriggerRetrying = "retrying"
	// TriggerDelivered: the destination answered 2xx.
	TriggerDelivered = "delivered"
	// TriggerFailed: retries ran out, the destination is gone (410) or
	// its address is not allowed.
	TriggerFailed = "failed"
	// TriggerSkipped: the rule was disabled or deleted before sending.
	TriggerSkipped = "skipped"
)

// TriggerStatuses lists the delivery states.
var TriggerStatuses = []string{
	TriggerPending, TriggerRetrying, TriggerDelivered, TriggerFailed, TriggerSkipped,
}

// TriggerThrottle is the next free sending slot of one destination. Every
// worker reserves slots here, so a destination's rate limit holds across
// processes.
type TriggerThrottle struct {
	// Destination is the URL's scheme, host and path.
	Destination string    `gorm:"primaryKey;size:300"`
	NextAt      time.Time `gorm:"not null"`
}

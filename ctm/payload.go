// Package ctm speaks CallTrackingMetrics: it parses the call objects CTM
// posts, verifies and makes CTM's webhook signatures, normalises phone
// numbers and builds realistic sample deliveries.
//
// CTM's payloads are loosely typed in practice (ids arrive as numbers or
// strings, tags as a list or a comma-separated string), so parsing is
// tolerant of type and of unknown fields; only a missing id is an error.
package ctm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Parsing errors, told apart so that the webhook can answer 400 or 422.
var (
	// ErrNotJSONObject means the body is not a JSON object at all.
	ErrNotJSONObject = errors.New("body is not a JSON object")
	// ErrNoID means the object has no usable CTM id.
	ErrNoID = errors.New("no usable call id")
)

// Call is a CTM call, text message, form or chat as CTM posts it, reduced
// to the fields ctmflow uses. Empty values mean "not sent".
type Call struct {
	ID        int64
	SID       string
	AccountID int64
	Direction string

	CallerNumber string
	Name         string
	CNAM         string

	TrackingNumber string
	TrackingLabel  string

	Source   string
	Medium   string
	Campaign string
	Keyword  string
	Referrer string

	City       string
	State      string
	Country    string
	PostalCode string
	Email      string

	IsNewCaller *bool
	// UnixTime is when the call started, from CTM's unix_time.
	UnixTime int64

	DialStatus string
	CallStatus string
	Duration   int
	TalkTime   int
	RingTime   int
	HoldTime   int
	Agent      Agent

	// Audio is CTM's recording URL.
	Audio             string
	TranscriptionText string
	Summary           string
	Tags              []string
	Notes             string
	Sale              *Sale
	CustomFields      map[string]any

	// MessageBody is an SMS's text; CTM's key for it is unverified, so
	// several candidates are read.
	MessageBody string
}

// Agent is who took the call.
type Agent struct {
	ID    string
	Name  string
	Email string
}

// Sale is CTM's scoring of a call.
type Sale struct {
	Score      *int
	Conversion *bool
	Value      *float64
	Name       string
}

// Message directions CTM uses for texts.
const (
	DirectionMsgInbound  = "msg_inbound"
	DirectionMsgOutbound = "msg_outbound"
)

// IsMessage reports whether the object is a text message.
func (c *Call) IsMessage() bool {
	return c.Direction == DirectionMsgInbound ||
		c.Direction == DirectionMsgOutbound
}

// CallerName is the best name CTM has for the caller: the editable name,
// else the carrier's caller-ID name.
func (c *Call) CallerName() string {
	if c.Name != "" {
		return c.Name
	}
	return c.CNAM
}

// StartedAt is when the call began, or the zero time when CTM did not say.
func (c *Call) StartedAt() time.Time {
	if c.UnixTime <= 0 {
		return time.Time{}
	}
	return time.Unix(c.UnixTime, 0).UTC()
}

// terminalStatuses are call statuses that only a finished call has.
var terminalStatuses = map[string]bool{
	"answered": true, "completed": true, "hangup": true,
	"no answer": true, "no-answer": true, "busy": true,
	"canceled": true, "cancelled": true, "failed": true,
	"unreachable": true, "voicemail": true,
}

// Finished reports whether the object describes a call that has ended,
// whatever webhook carried it. CTM's update webhooks post the whole call
// object, so an update after hang-up is as good as an end.
func (c *Call) Finished() bool {
	if c.Duration > 0 {
		return true
	}
	if terminalStatuses[strings.ToLower(c.CallStatus)] {
		return true
	}
	ds := strings.ToLower(c.DialStatus)
	return ds != "" && ds != "ringing" && ds != "in-progress" &&
		ds != "in progress" && ds != "queued" && ds != "initiated"
}

// Parse decodes a CTM webhook body. It fails only when the body is not a
// JSON object (ErrNotJSONObject) or carries no usable id (ErrNoID); every
// other field is optional and read leniently.
func Parse(body []byte) (*Call, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()

	var raw map[string]any
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return nil, ErrNotJSONObject
	}
	// Anything after the object makes the body something else: a second
	// document, or a stray '}' or ']' that Decoder.More would not report.
	if _, err := dec.Token(); err != io.EOF {
		return nil, ErrNotJSONObject
	}

	f := fields(raw)
	c := &Call{
		ID:        f.int64("id"),
		SID:       f.str("sid"),
		AccountID: f.int64("account_id"),
		Direction: strings.ToLower(f.str("direction")),

		CallerNumber: f.first("caller_number", "caller_number_bare", "caller_number_format"),
		Name:         f.str("name"),
		CNAM:         f.str("cnam"),

		TrackingNumber: f.str("tracking_number"),
		TrackingLabel:  f.str("tracking_label"),

		Source:   f.str("source"),
		Medium:   f.str("medium"),
		Campaign: f.str("campaign"),
		Keyword:  f.str("keyword"),
		Referrer: f.first("referrer", "web_source"),

		City:       f.str("city"),
		State:      f.str("state"),
		Country:    f.str("country"),
		PostalCode: f.str("postal_code"),
		Email:      f.str("email"),

		IsNewCaller: f.boolPtr("is_new_caller"),
		UnixTime:    f.int64("unix_time"),

		DialStatus: f.str("dial_status"),
		CallStatus: f.first("call_status", "status"),
		Duration:   int(f.int64("duration")),
		TalkTime:   int(f.int64("talk_time")),
		RingTime:   int(f.int64("ring_time")),
		HoldTime:   int(f.int64("hold_time")),

		Audio:             f.str("audio"),
		TranscriptionText: f.str("transcription_text"),
		Summary:           f.first("summary", "call_summary"),
		Tags:              f.strings("tag_list", "tags"),
		Notes:             f.str("notes"),
		MessageBody:       f.first("message_body", "body", "message", "sms_body"),
	}
	if c.ID <= 0 {
		return nil, ErrNoID
	}

	if agent, ok := raw["agent"].(map[string]any); ok {
		a := fields(agent)
		c.Agent = Agent{ID: a.str("id"), Name: a.str("name"), Email: a.str("email")}
	}
	if sale, ok := raw["sale"].(map[string]any); ok {
		c.Sale = parseSale(fields(sale))
	}
	if custom, ok := raw["custom_fields"].(map[string]any); ok && len(custom) > 0 {
		c.CustomFields = custom
	}
	return c, nil
}

func parseSale(s fields) *Sale {
	sale := &Sale{
		Conversion: s.boolPtr("conversion"),
		Name:       s.str("name"),
	}
	if v, ok := s.number("score"); ok {
		score := int(v)
		if score >= 1 && score <= 5 {
			sale.Score = &score
		}
	}
	if v, ok := s.number("value"); ok {
		sale.Value = &v
	}
	if sale.Score == nil && sale.Conversion == nil && sale.Value == nil && sale.Name == "" {
		return nil
	}
	return sale
}

// fields reads a decoded JSON object leniently.
type fields map[string]any

func (f fields) str(key string) string {
	switch v := f[key].(type) {
	case string:
		return strings.TrimSpace(v)
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

func (f fields) first(keys ...string) string {
	for _, k := range keys {
		if v := f.str(k); v != "" {
			return v
		}
	}
	return ""
}

func (f fields) number(key string) (float64, bool) {
	switch v := f[key].(type) {
	case json.Number:
		n, err := v.Float64()
		return n, err == nil
	case string:
		n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return n, err == nil
	}
	return 0, false
}

func (f fields) int64(key string) int64 {
	switch v := f[key].(type) {
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return n
		}
		if n, err := v.Float64(); err == nil && n == float64(int64(n)) {
			return int64(n)
		}
	case string:
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			return n
		}
	}
	return 0
}

func (f fields) boolPtr(key string) *bool {
	var b bool
	switch v := f[key].(type) {
	case bool:
		b = v
	case json.Number:
		b = v.String() != "0"
	case string:
		parsed, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return nil
		}
		b = parsed
	default:
		return nil
	}
	return &b
}

// strings reads a list of strings sent either as a JSON array or as one
// comma-separated string.
func (f fields) strings(keys ...string) []string {
	for _, key := range keys {
		var out []string
		switch v := f[key].(type) {
		case []any:
			for _, item := range v {
				if s, ok := item.(string); ok && strings.TrimSpace(s) != "" {
					out = append(out, strings.TrimSpace(s))
				}
			}
		case string:
			for _, s := range strings.Split(v, ",") {
				if s = strings.TrimSpace(s); s != "" {
					out = append(out, s)
				}
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}

// String keeps a Call out of logs: it names the call, never the caller.
func (c *Call) String() string {
	return fmt.Sprintf("ctm call %d (account %d)", c.ID, c.AccountID)
}

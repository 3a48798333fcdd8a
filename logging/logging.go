// Package logging builds ctmflow's one logger: log/slog, JSON in
// production and text in development, snake_case keys named by the
// constants below, and a last line of defence that blanks anything shaped
// like a phone number before it is written.
//
// The defence is not the policy. The policy is that no code logs a phone
// number, name, transcript or recording URL; the redactor only catches a
// mistake, such as a number inside a third-party error string.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
)

// Keys every log line uses for the same things.
const (
	KeyError      = "error"
	KeyRequestID  = "request_id"
	KeyDeliveryID = "delivery_id"
	KeyAccountID  = "account_id"
	KeyCTMID      = "ctm_id"
	KeyCallID     = "call_id"
	KeyKind       = "kind"
	KeyStatus     = "status"
	KeyCode       = "code"
	KeyMethod     = "method"
	KeyPath       = "path"
	KeyDurationMS = "duration_ms"
	KeyAttempt    = "attempt"
	KeyCount      = "count"
	KeyAddr       = "addr"
	KeyComponent  = "component"

	// Trigger ids: a rule, a lead event, a delivery of one to the other.
	KeyRuleID            = "rule_id"
	KeyEventID           = "event_id"
	KeyTriggerDeliveryID = "trigger_delivery_id"
)

// numericKeys may carry long numbers that are not phone numbers.
var numericKeys = map[string]bool{
	KeyDeliveryID: true, KeyAccountID: true, KeyCTMID: true,
	KeyStatus: true, KeyDurationMS: true, KeyAttempt: true, KeyCount: true,
}

// New returns a logger writing to w. format is "json" or "text"; level is
// debug, info, warn or error.
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("unknown log level %q", level)
	}
	opts := &slog.HandlerOptions{Level: lv}

	var h slog.Handler
	switch strings.ToLower(format) {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("unknown log format %q (want json or text)", format)
	}
	return slog.New(Redact(h)), nil
}

// phonePattern matches what a phone number looks like in text, in every
// rendering CTM uses or has used: E.164 (+12395550171), international
// with separators (+1 239-555-0171, +44 20 7946 0958), North American
// formatting ((239) 555-0171, 239-555-0171, 239.555.0171, 239 555 0171),
// bare 10–11 digit runs (2395550171, 12395550171) and E.164 escaped in a
// URL (%2B12395550171). Dates, times and UTC offsets (+00:00) do not
// match.
var phonePattern = regexp.MustCompile(
	`\+\d[\d\s().-]{6,18}\d|%2[Bb]\d{8,15}|\(?\b\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}\b|\b1?\d{10}\b`)

// Redacted replaces what the redactor removes.
const Redacted = "[redacted]"

// RedactString blanks phone-shaped runs in s.
func RedactString(s string) string {
	return phonePattern.ReplaceAllString(s, Redacted)
}

// Redact wraps h so that string values and messages are scrubbed of
// phone-shaped text.
func Redact(h slog.Handler) slog.Handler {
	return redactor{h}
}

type redactor struct{ next slog.Handler }

func (r redactor) Enabled(ctx context.Context, l slog.Level) bool {
	return r.next.Enabled(ctx, l)
}

func (r redactor) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, RedactString(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return r.next.Handle(ctx, out)
}

func (r redactor) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = redactAttr(a)
	}
	return redactor{r.next.WithAttrs(clean)}
}

func (r redactor) WithGroup(name string) slog.Handler {
	return redactor{r.next.WithGroup(name)}
}

func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, RedactString(v.String()))
	case slog.KindGroup:
		group := v.Group()
		clean := make([]any, len(group))
		for i, g := range group {
			clean[i] = redactAttr(g)
		}
		return slog.Group(a.Key, clean...)
	case slog.KindInt64, slog.KindUint64:
		// A number under a key we name (ids, counts) is what the key says;
		// under any other key, ten or more digits may be a phone number.
		if !numericKeys[a.Key] && phonePattern.MatchString(v.String()) {
			return slog.String(a.Key, Redacted)
		}
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, RedactString(err.Error()))
		}
		return slog.String(a.Key, RedactString(fmt.Sprint(v.Any())))
	}
	return slog.Attr{Key: a.Key, Value: v}
}

package triggers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/ctmflow/ctmflow/egress"
	"github.com/ctmflow/ctmflow/logging"
	"github.com/ctmflow/ctmflow/metrics"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
)

// Error types of SendTrigger that the workflow sees. Gone, Refused and
// Broken are final; Failed and Throttled are retried.
const (
	ErrTypeGone      = "DestinationGone"
	ErrTypeRefused   = "DestinationRefused"
	ErrTypeBroken    = "DeliveryBroken"
	ErrTypeFailed    = "DeliveryAttemptFailed"
	ErrTypeThrottled = "DestinationThrottled"
)

// UserAgent names ctmflow to receivers.
const UserAgent = "ctmflow-triggers/1"

// maxRetryAfter caps how long a destination's Retry-After may hold a
// delivery back in one go.
const maxRetryAfter = 24 * time.Hour

// Schedule is how a delivery is retried: the wait after a failed attempt
// starts at Initial and doubles up to Max, each wait jittered by ±25 % so
// that deliveries failed together do not retry together; after For, the
// delivery has failed. Tests compress a day into seconds with it.
type Schedule struct {
	Initial time.Duration
	Max     time.Duration
	For     time.Duration
}

// Delay is the wait after failed attempt number attempt (from 1); u, in
// [0, 1), draws the jitter.
func (s Schedule) Delay(attempt int32, u float64) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := float64(s.Initial) * math.Pow(2, float64(attempt-1))
	if d > float64(s.Max) {
		d = float64(s.Max)
	}
	return time.Duration(d * (0.75 + 0.5*u))
}

// Sender holds the dependencies of the delivery activities.
type Sender struct {
	Store *store.Store
	// Client makes the requests; it must be egress's guarded client.
	Client *http.Client
	// MaxThrottleWait is the longest an attempt waits in place for its
	// destination's next rate-limit slot; a later slot sends the attempt
	// back to Temporal to come back then. Default 5s.
	MaxThrottleWait time.Duration
	// Metrics, when set, counts attempts by event type and result.
	Metrics *metrics.Metrics
}

// SendInput names a delivery's run: ids and the schedule, nothing else.
type SendInput struct {
	DeliveryID int64
	Run        int
	Retry      Schedule
}

// FailInput says why a run gave up.
type FailInput struct {
	DeliveryID int64
	Run        int
	// Reason holds no PHI: it comes from SendTrigger's errors.
	Reason string
}

// SendTrigger makes one attempt of a delivery: it builds the payload from
// the database, signs it and POSTs it. A 2xx delivers; 410 Gone disables
// the rule; 429 and 503 come back after their Retry-After; anything else
// comes back after the schedule's next delay. Each attempt is recorded in
// the delivery log before the activity returns.
//
// The payload never leaves this function except on the wire: errors say
// what the destination answered, never what was sent or the answer's
// body.
func (s *Sender) SendTrigger(ctx context.Context, in SendInput) error {
	d, err := s.Store.GetTriggerDelivery(ctx, in.DeliveryID)
	if errors.Is(err, store.ErrNotFound) {
		return final(ErrTypeBroken, "delivery not found")
	}
	if err != nil {
		return err
	}
	if d.Resends != in.Run || isFinal(d.Status) {
		// A resend replaced this run, or an earlier attempt finished it.
		return nil
	}

	rule, err := s.Store.GetRule(ctx, d.RuleID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.Metrics.ObserveTrigger(d.EventType, models.TriggerSkipped)
		return s.Store.FinishTriggerDelivery(ctx, d.ID, in.Run, models.TriggerSkipped, "rule deleted")
	case err != nil:
		return err
	case !rule.Enabled():
		s.Metrics.ObserveTrigger(d.EventType, models.TriggerSkipped)
		return s.Store.FinishTriggerDelivery(ctx, d.ID, in.Run, models.TriggerSkipped,
			"rule disabled: "+rule.DisabledReason)
	}

	facts, err := s.Store.GetEventFacts(ctx, d.EventID)
	if errors.Is(err, store.ErrNotFound) {
		const why = "lead event or its lead no longer exists"
		if err := s.Store.FinishTriggerDelivery(ctx, d.ID, in.Run, models.TriggerFailed, why); err != nil {
			return err
		}
		return final(ErrTypeBroken, why)
	}
	if err != nil {
		return err
	}
	body, err := BuildPayload(rule, facts)
	if err != nil {
		return final(ErrTypeBroken, "payload does not encode")
	}

	if rule.RateLimit > 0 {
		if err := s.throttle(ctx, rule); err != nil {
			return err
		}
	}
	code, header, sendErr := s.post(ctx, rule, d.WebhookID, body)
	return s.settle(ctx, d, rule, in, code, header, sendErr)
}

// FailTrigger records that a run gave up: its retries ran out.
func (s *Sender) FailTrigger(ctx context.Context, in FailInput) error {
	d, err := s.Store.GetTriggerDelivery(ctx, in.DeliveryID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err := s.Store.FinishTriggerDelivery(ctx, in.DeliveryID, in.Run, models.TriggerFailed, in.Reason); err != nil {
		return err
	}
	// A final answer (410, a refused address) was counted as it came.
	if d != nil && d.Resends == in.Run && !isFinal(d.Status) {
		s.Metrics.ObserveTrigger(d.EventType, models.TriggerFailed)
	}
	return nil
}

func isFinal(status string) bool {
	return status == models.TriggerDelivered || status == models.TriggerFailed || status == models.TriggerSkipped
}

// throttle waits for the destination's next rate-limit slot, or sends the
// attempt back to Temporal when the slot is further off than it should
// hold a worker slot for.
func (s *Sender) throttle(ctx context.Context, rule *models.TriggerRule) error {
	horizon := s.MaxThrottleWait
	if horizon <= 0 {
		horizon = 5 * time.Second
	}
	interval := time.Duration(float64(time.Second) / rule.RateLimit)
	slot, booked, err := s.Store.ReserveSlot(ctx, Destination(rule.URL), interval, horizon)
	if err != nil {
		return err
	}
	wait := time.Until(slot)
	if !booked {
		return temporal.NewApplicationErrorWithOptions(
			fmt.Sprintf("destination rate limit: next free slot in %s", wait.Round(time.Millisecond)),
			ErrTypeThrottled,
			temporal.ApplicationErrorOptions{
				NextRetryDelay: wait,
				Category:       temporal.ApplicationErrorCategoryBenign,
			})
	}
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// post sends one signed request and returns the answer's status and
// headers. The answer's body is read (so the connection can be reused)
// and dropped: it may echo the payload.
func (s *Sender) post(ctx context.Context, rule *models.TriggerRule,
	webhookID string, body []byte) (int, http.Header, error) {
	now := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rule.URL, bytes.NewReader(body))
	if err != nil {
		return 0, nil, errors.New("destination URL does not make a request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(HeaderID, webhookID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, SignatureHeader(signingKeys(rule, now), webhookID, now, body))

	resp, err := s.Client.Do(req)
	if err != nil {
		// url.Error quotes the URL, which may carry a token in its path.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return 0, nil, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header, nil
}

// signingKeys are the keys that sign now: the rule's secret, and during a
// rotation's overlap the previous one.
func signingKeys(rule *models.TriggerRule, now time.Time) [][]byte {
	var keys [][]byte
	if k, err := DecodeSecret(rule.Secret); err == nil {
		keys = append(keys, k)
	}
	if rule.PreviousSecret != "" && rule.PreviousSecretUntil != nil && now.Before(*rule.PreviousSecretUntil) {
		if k, err := DecodeSecret(rule.PreviousSecret); err == nil {
			keys = append(keys, k)
		}
	}
	return keys
}

// settle records an attempt's outcome and tells Temporal what follows.
func (s *Sender) settle(ctx context.Context, d *models.TriggerDelivery, rule *models.TriggerRule,
	in SendInput, code int, header http.Header, sendErr error) error {
	log := activity.GetLogger(ctx)
	attempt := activity.GetInfo(ctx).Attempt
	record := func(status, why string) error {
		s.Metrics.ObserveTrigger(d.EventType, status)
		return s.Store.RecordTriggerAttempt(ctx, d.ID, in.Run, store.TriggerAttempt{
			StatusCode: code, Err: why, Status: status,
		})
	}
	ids := []any{logging.KeyTriggerDeliveryID, d.ID, logging.KeyRuleID, rule.ID, logging.KeyAttempt, attempt}

	switch {
	case sendErr != nil && errors.Is(sendErr, egress.ErrRefused):
		why := sendErr.Error()
		if err := record(models.TriggerFailed, why); err != nil {
			return err
		}
		log.Warn("trigger destination refused by the SSRF guard", ids...)
		return final(ErrTypeRefused, why)

	case sendErr != nil:
		why := "sending: " + sendErr.Error()
		if err := record(models.TriggerRetrying, why); err != nil {
			return err
		}
		log.Info("trigger attempt failed", append(ids, logging.KeyError, why)...)
		return retry(why, in.Retry.Delay(attempt, rand.Float64()))

	case code >= 200 && code < 300:
		return record(models.TriggerDelivered, "")

	case code == http.StatusGone:
		const why = "destination answered 410 Gone; rule disabled"
		if err := record(models.TriggerFailed, why); err != nil {
			return err
		}
		if err := s.Store.DisableRule(ctx, rule.ID, "destination answered 410 Gone"); err != nil {
			return err
		}
		log.Warn("trigger destination gone; rule disabled", ids...)
		return final(ErrTypeGone, why)
	}

	why := fmt.Sprintf("destination answered %d %s", code, http.StatusText(code))
	delay := in.Retry.Delay(attempt, rand.Float64())
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		// Never sooner than asked; never sooner than the schedule either,
		// or "Retry-After: 0" would have us hammer a struggling server.
		if after, ok := retryAfter(header, time.Now()); ok {
			delay = max(delay, after)
			why += fmt.Sprintf(", retry after %s", after)
		}
	}
	if err := record(models.TriggerRetrying, why); err != nil {
		return err
	}
	log.Info("trigger attempt failed", append(ids, logging.KeyStatus, code)...)
	return retry(why, delay)
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		d = at.Sub(now)
	} else {
		return 0, false
	}
	// Temporal cannot retry "now": zero means "use the policy". A
	// millisecond is as good as now.
	d = max(d, time.Millisecond)
	return min(d, maxRetryAfter), true
}

func final(errType, msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, errType, nil)
}

// retry is a failed attempt to come back to after delay. A destination
// being down is expected, not a bug: benign keeps it out of the SDK's
// error logs.
func retry(msg string, delay time.Duration) error {
	return temporal.NewApplicationErrorWithOptions(msg, ErrTypeFailed, temporal.ApplicationErrorOptions{
		NextRetryDelay: max(delay, time.Millisecond),
		Category:       temporal.ApplicationErrorCategoryBenign,
	})
}

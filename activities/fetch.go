package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
)

// What CTM's API said about a call whose end never came.
const (
	// CTMCallEnded: the call has ended; FetchCallResult.DeliveryID holds
	// its call object, stored as a call-end delivery.
	CTMCallEnded = "ended"
	// CTMCallInProgress: the call is still going on.
	CTMCallInProgress = "in_progress"
	// CTMCallUnknown: CTM does not know the call (404).
	CTMCallUnknown = "unknown"
	// CTMNoKeys: no API keys are configured for the account.
	CTMNoKeys = "no_keys"
)

// Error types of CTM API failures, for retry policies and ops.
const (
	// ErrTypeCTMUnauthorized: CTM refused the account's keys; retrying
	// cannot help until a person fixes CTM_API_KEYS.
	ErrTypeCTMUnauthorized = "CTMUnauthorized"
	// ErrTypeCTMRefused: CTM refused the request itself (a 4xx).
	ErrTypeCTMRefused = "CTMRefused"
	// ErrTypeCTMRateLimited: retried after CTM's Retry-After.
	ErrTypeCTMRateLimited = "CTMRateLimited"
	// ErrTypeCTMUnavailable: a 5xx or no answer; retried with backoff.
	ErrTypeCTMUnavailable = "CTMUnavailable"
)

// FetchCallResult is what the workflow learns from CTM's API: a status
// and the id of the stored call object, never its content.
type FetchCallResult struct {
	Status     string
	DeliveryID int64
}

// FetchCall asks CTM's API for a call whose end webhook never came. An
// ended call's object is stored in the inbox as a call-end delivery (the
// body stays in the database), for the workflow to apply as if the
// webhook had come.
func (a *Activities) FetchCall(ctx context.Context, ref CallRef) (FetchCallResult, error) {
	defer keepAlive(ctx)()
	if a.CTM == nil || !a.CTM.HasKeys(ref.AccountID) {
		return FetchCallResult{Status: CTMNoKeys}, nil
	}
	body, err := a.CTM.GetCall(ctx, ref.AccountID, ref.CallID)
	switch {
	case errors.Is(err, ctm.ErrNotFound):
		return FetchCallResult{Status: CTMCallUnknown}, nil
	case err != nil:
		return FetchCallResult{}, ctmFailure(err)
	}

	c, err := ctm.Parse(body)
	if err != nil || c.ID != ref.CallID {
		return FetchCallResult{}, temporal.NewNonRetryableApplicationError(
			"CTM's API answered with an unusable call object", ErrTypeInvalid, nil)
	}
	if !c.Finished() {
		return FetchCallResult{Status: CTMCallInProgress}, nil
	}

	sum := sha256.Sum256(body)
	d := &models.Delivery{
		AccountID:  ref.AccountID,
		Kind:       models.KindCallEnd,
		BodySHA256: hex.EncodeToString(sum[:]),
		CTMID:      ref.CallID,
		Body:       body,
		// The API's object is CTM's state now: it ranks as sent now.
		CTMTime: strconv.FormatInt(time.Now().Unix(), 10),
	}
	if _, err := a.Store.SaveFetched(ctx, d); err != nil {
		return FetchCallResult{}, err
	}
	return FetchCallResult{Status: CTMCallEnded, DeliveryID: d.ID}, nil
}

// ctmFailure turns a CTM API error into the Temporal error its class
// calls for. The messages hold paths with ids and statuses only.
func ctmFailure(err error) error {
	var apiErr *ctm.APIError
	if !errors.As(err, &apiErr) {
		return err
	}
	msg := apiErr.Error()
	switch {
	case errors.Is(err, ctm.ErrUnauthorized), errors.Is(err, ctm.ErrNoCredentials):
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeCTMUnauthorized, nil)
	case errors.Is(err, ctm.ErrRateLimited):
		return temporal.NewApplicationErrorWithOptions(msg, ErrTypeCTMRateLimited, temporal.ApplicationErrorOptions{
			NextRetryDelay: apiErr.RetryAfter,
		})
	case errors.Is(err, ctm.ErrRefused):
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeCTMRefused, nil)
	}
	return temporal.NewApplicationError(msg, ErrTypeCTMUnavailable)
}

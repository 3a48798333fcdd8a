// Package webhook receives CTM's webhooks. Each delivery is checked in a
// fixed order — content type, size, signature over the raw bytes, then
// JSON — and stored in the inbox before it is answered: 202 for a new
// delivery, 200 for a repeat, and a JSON error CTM can act on otherwise.
package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/httperr"
	"github.com/ctmflow/ctmflow/logging"
	"github.com/ctmflow/ctmflow/models"
)

// DefaultMaxBody is the largest body accepted when Options say nothing.
// Transcripts run to tens of kilobytes; a megabyte leaves ample room.
const DefaultMaxBody = 1 << 20

// DefaultStoreTimeout bounds storing one delivery when Options say
// nothing. A database that hangs rather than refuses must still get CTM a
// 503 it can retry on, not a request left open until CTM gives up.
const DefaultStoreTimeout = 10 * time.Second

// Inbox stores a delivery durably; it is the one seam between the HTTP
// side and the workflow engine.
type Inbox interface {
	Accept(ctx context.Context, d *models.Delivery) (duplicate bool, err error)
}

// Options configure the handler.
type Options struct {
	Verifier *ctm.Verifier
	Inbox    Inbox
	// MaxBody caps a delivery's size in bytes. Default DefaultMaxBody.
	MaxBody int64
	// StoreTimeout bounds storing a delivery. Default DefaultStoreTimeout.
	StoreTimeout time.Duration
	Logger       *slog.Logger
	// Observe, when set, is told of every request to a webhook path: its
	// kind (the path's), its result — "accepted", "duplicate", or the
	// error code of a rejection, as the JSON error names it — and how
	// long the answer took. Unknown paths and methods never reach the
	// webhook: server.Options.CountError counts those.
	Observe func(kind, result string, took time.Duration)
}

// Handler serves the CTM webhook paths.
type Handler struct {
	opts Options
	log  *slog.Logger
}

// New returns a Handler.
func New(opts Options) *Handler {
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = DefaultStoreTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{opts: opts, log: opts.Logger}
}

// Paths maps each webhook path, under /webhooks/ctm, to its delivery kind.
var Paths = map[string]string{
	"call-start":   models.KindCallStart,
	"call-end":     models.KindCallEnd,
	"call-update":  models.KindCallUpdate,
	"text-message": models.KindTextMessage,
}

// Register mounts the webhook paths on r.
func (h *Handler) Register(r gin.IRouter) {
	g := r.Group("/webhooks/ctm")
	for path, kind := range Paths {
		g.POST("/"+path, h.receive(kind))
	}
}

// Response is the body of a 2xx answer.
type Response struct {
	DeliveryID int64  `json:"delivery_id"`
	Status     string `json:"status"`
}

func (h *Handler) receive(kind string) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		d, dup, err := h.accept(c, kind)
		result := "accepted"
		switch {
		case err != nil:
			var e *httperr.Error
			result = "error"
			if errors.As(err, &e) {
				result = e.Code
			}
			httperr.Abort(c, err)
		case dup:
			result = "duplicate"
			c.JSON(http.StatusOK, Response{DeliveryID: d.ID, Status: "duplicate"})
		default:
			c.JSON(http.StatusAccepted, Response{DeliveryID: d.ID, Status: "accepted"})
		}
		if h.opts.Observe != nil {
			h.opts.Observe(kind, result, time.Since(start))
		}
		if err == nil {
			h.log.Debug("delivery stored",
				logging.KeyDeliveryID, d.ID, logging.KeyKind, d.Kind,
				logging.KeyAccountID, d.AccountID, logging.KeyCTMID, d.CTMID,
				"duplicate", dup)
		}
	}
}

func (h *Handler) accept(c *gin.Context, kind string) (*models.Delivery, bool, error) {
	if err := checkContentType(c.GetHeader("Content-Type")); err != nil {
		return nil, false, err
	}
	body, err := h.readBody(c)
	if err != nil {
		return nil, false, err
	}

	ctmTime := c.GetHeader(ctm.HeaderTime)
	hint, err := accountHint(c)
	if err != nil {
		return nil, false, err
	}
	accounts, err := h.opts.Verifier.Verify(ctmTime, c.GetHeader(ctm.HeaderSignature), body, hint)
	if err != nil {
		return nil, false, unauthorized(err)
	}

	call, err := ctm.Parse(body)
	switch {
	case errors.Is(err, ctm.ErrNotJSONObject):
		return nil, false, httperr.Wrap(http.StatusBadRequest, "invalid_json",
			"body must be a JSON object", err)
	case errors.Is(err, ctm.ErrNoID):
		return nil, false, httperr.Wrap(http.StatusUnprocessableEntity, "missing_id",
			"body has no usable id: a positive integer is required", err)
	case err != nil:
		return nil, false, httperr.Wrap(http.StatusBadRequest, "invalid_body", "body could not be read", err)
	}

	account, err := resolveAccount(call.AccountID, accounts)
	if err != nil {
		return nil, false, err
	}
	// CTM sends texts through the same webhooks as calls, told apart by
	// direction; route them by what they are, whatever path they took.
	if call.IsMessage() {
		kind = models.KindTextMessage
	}

	sum := sha256.Sum256(body)
	d := &models.Delivery{
		AccountID:  account,
		Kind:       kind,
		BodySHA256: hex.EncodeToString(sum[:]),
		CTMID:      call.ID,
		Body:       body,
		CTMTime:    ctmTime,
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), h.opts.StoreTimeout)
	defer cancel()
	dup, err := h.opts.Inbox.Accept(ctx, d)
	if err != nil {
		return nil, false, &httperr.Error{
			Status:     http.StatusServiceUnavailable,
			Code:       "storage_unavailable",
			Message:    "delivery could not be stored; retry later",
			Cause:      err,
			RetryAfter: 5 * time.Second,
		}
	}
	return d, dup, nil
}

func checkContentType(header string) error {
	// CTM's sample code sends JSON; a missing header is tolerated since
	// that much is unverified, but a body declared as anything else is
	// refused before it is read.
	if header == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(header)
	if err == nil && (mt == "application/json" || mt == "text/json") {
		return nil
	}
	return httperr.New(http.StatusUnsupportedMediaType, "unsupported_media_type",
		"content type must be application/json")
}

func (h *Handler) readBody(c *gin.Context) ([]byte, error) {
	tooLarge := httperr.New(http.StatusRequestEntityTooLarge, "body_too_large",
		"body exceeds "+strconv.FormatInt(h.opts.MaxBody, 10)+" bytes")
	if c.Request.ContentLength > h.opts.MaxBody {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, h.opts.MaxBody))
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		return nil, tooLarge
	case err != nil:
		return nil, httperr.Wrap(http.StatusBadRequest, "unreadable_body", "body could not be read", err)
	case len(body) == 0:
		return nil, httperr.New(http.StatusBadRequest, "empty_body", "body is empty")
	}
	return body, nil
}

// accountHint reads the optional ?account= query parameter: with many
// accounts configured, naming the account spares trying every secret.
func accountHint(c *gin.Context) (int64, error) {
	v := c.Query("account")
	if v == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, httperr.New(http.StatusBadRequest, "invalid_account",
			"account query parameter must be a positive integer")
	}
	return id, nil
}

func unauthorized(err error) error {
	code, msg := "signature_invalid", "signature verification failed"
	switch {
	case errors.Is(err, ctm.ErrSignatureMissing):
		code, msg = "signature_missing", "X-CTM-Time and X-CTM-Signature headers are required"
	case errors.Is(err, ctm.ErrTimestampInvalid):
		code, msg = "timestamp_invalid", "X-CTM-Time is not a timestamp"
	case errors.Is(err, ctm.ErrTimestampSkew):
		code, msg = "timestamp_out_of_window", "X-CTM-Time is more than 5 minutes from server time"
	case errors.Is(err, ctm.ErrUnknownAccount):
		code, msg = "unknown_account", "no webhook secret is configured for this account"
	}
	return httperr.Wrap(http.StatusUnauthorized, code, msg, err)
}

// resolveAccount checks the body's account against the accounts whose
// secret signed it; a body without account_id takes the signer's account
// when that is unambiguous.
func resolveAccount(claimed int64, signers []int64) (int64, error) {
	if claimed == 0 {
		if len(signers) == 1 {
			return signers[0], nil
		}
		return 0, httperr.New(http.StatusUnprocessableEntity, "missing_account",
			"body has no account_id and the signing secret is shared by several accounts")
	}
	if !slices.Contains(signers, claimed) {
		return 0, httperr.New(http.StatusUnauthorized, "unknown_account",
			"the body's account_id is not signed by that account's secret")
	}
	return claimed, nil
}

// Package httperr is how ctmflow's HTTP handlers fail: a handler returns an
// *Error that keeps the status and the message shown to the client apart
// from the cause, and one middleware renders it as JSON and logs it once.
// Client mistakes are logged at Info, our own failures at Error.
package httperr

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ctmflow/ctmflow/logging"
)

// Error is a failed request.
type Error struct {
	// Status is the HTTP status.
	Status int
	// Code is a stable, machine-readable name for the failure.
	Code string
	// Message is shown to the client; it must not hold PHI or internals.
	Message string
	// Cause is logged, never shown.
	Cause error
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter time.Duration
	// Fields names, for validation failures, each bad field and why.
	Fields map[string]string
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Code + ": " + e.Cause.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

// New returns an error with no cause beyond its message.
func New(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// Wrap returns an error whose cause is logged but not shown.
func Wrap(status int, code, message string, cause error) *Error {
	return &Error{Status: status, Code: code, Message: message, Cause: cause}
}

// StatusClientClosed is logged and counted for a request whose client
// went away before the answer (nginx's 499): not a failure of ours.
const StatusClientClosed = 499

// Body is the JSON every failed request answers with.
type Body struct {
	Error BodyError `json:"error"`
}

// BodyError is the inside of Body.
type BodyError struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// Abort stops the request with err, for Middleware to render.
func Abort(c *gin.Context, err error) {
	_ = c.Error(err)
	c.Abort()
}

// Middleware renders the last error a handler recorded with Abort, and
// logs it once, with the request id and without the body.
func Middleware(logger *slog.Logger, counter func(code string, status int)) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Next()
		if len(c.Errors) == 0 {
			return
		}

		var e *Error
		if !errors.As(c.Errors.Last().Err, &e) {
			e = Wrap(http.StatusInternalServerError, "internal", "internal error", c.Errors.Last().Err)
		}
		if c.Request.Context().Err() != nil && errors.Is(e, context.Canceled) {
			// The client hung up before its answer: nothing failed on our
			// side, and no one reads the status.
			e = Wrap(StatusClientClosed, "client_closed_request", "the client closed the request", e.Cause)
		}
		if e.RetryAfter > 0 {
			c.Header("Retry-After", strconv.Itoa(int(e.RetryAfter.Round(time.Second)/time.Second)))
		}
		if !c.Writer.Written() {
			c.JSON(e.Status, Body{Error: BodyError{Code: e.Code, Message: e.Message, Fields: e.Fields}})
		}
		if counter != nil {
			counter(e.Code, e.Status)
		}

		level := slog.LevelInfo
		if e.Status >= 500 {
			level = slog.LevelError
		}
		attrs := []any{
			logging.KeyStatus, e.Status, logging.KeyCode, e.Code,
			logging.KeyMethod, c.Request.Method, logging.KeyPath, c.FullPath(),
			logging.KeyRequestID, c.GetString(logging.KeyRequestID),
		}
		if e.Cause != nil {
			attrs = append(attrs, logging.KeyError, e.Cause.Error())
		}
		logger.Log(c.Request.Context(), level, "request failed", attrs...)
	}
}

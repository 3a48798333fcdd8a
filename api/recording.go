package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/httperr"
	"github.com/ctmflow/ctmflow/logging"
	"github.com/ctmflow/ctmflow/store"
)

// passedHeaders are the recording's answer headers a player needs.
var passedHeaders = []string{
	"Content-Type", "Content-Length", "Content-Range", "Accept-Ranges",
	"ETag", "Last-Modified",
}

// recording streams a call's recording through the service, so staff can
// play it without CTM credentials. CTM's URL is fetched with the
// account's API keys; the short-lived storage link it redirects to is
// followed without them, and never shown. Range requests pass through,
// so a browser player can seek.
func (a *API) recording(c *gin.Context) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		httperr.Abort(c, invalidField("id", "must be a positive integer"))
		return
	}
	call, err := a.opts.Store.GetCallByID(c.Request.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		httperr.Abort(c, httperr.New(http.StatusNotFound, "call_not_found", "no call with that id"))
		return
	case err != nil:
		httperr.Abort(c, httperr.Wrap(http.StatusInternalServerError, "storage_error",
			"call could not be loaded", err))
		return
	case call.RecordingURL == "":
		httperr.Abort(c, httperr.New(http.StatusNotFound, "recording_not_found", "the call has no recording yet"))
		return
	case a.opts.CTM == nil:
		httperr.Abort(c, httperr.New(http.StatusServiceUnavailable, "recordings_unavailable",
			"this server is not set up to fetch recordings from CTM"))
		return
	}

	resp, err := a.opts.CTM.OpenRecording(c.Request.Context(), call.AccountID, call.RecordingURL, c.Request.Header)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			c.Abort() // the player went away
			return
		}
		httperr.Abort(c, recordingError(err))
		return
	}
	defer resp.Body.Close()

	h := c.Writer.Header()
	for _, name := range passedHeaders {
		if v := resp.Header.Get(name); v != "" {
			h.Set(name, v)
		}
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "audio/mpeg")
	}
	// A recording is health information: no shared cache may keep it.
	h.Set("Cache-Control", "private, no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	c.Status(resp.StatusCode)
	if _, err := io.Copy(c.Writer, resp.Body); err != nil {
		a.opts.Logger.Debug("recording stream ended early", logging.KeyCallID, id, logging.KeyError, err)
	}
}

// recordingError answers each way fetching a recording fails.
func recordingError(err error) *httperr.Error {
	switch {
	case errors.Is(err, ctm.ErrForeignHost):
		return httperr.Wrap(http.StatusBadGateway, "recording_url_refused",
			"the call's recording URL is not on CTM's API host, so it is not fetched", err)
	case errors.Is(err, ctm.ErrNoCredentials):
		return httperr.Wrap(http.StatusServiceUnavailable, "ctm_keys_missing",
			"no CTM API keys are configured for the call's account", err)
	case errors.Is(err, ctm.ErrUnauthorized):
		return httperr.Wrap(http.StatusBadGateway, "ctm_unauthorized",
			"CTM refused the account's API keys", err)
	case errors.Is(err, ctm.ErrNotFound):
		return httperr.Wrap(http.StatusNotFound, "recording_not_found",
			"CTM has no recording for this call", err)
	case errors.Is(err, ctm.ErrRateLimited):
		wait := 5 * time.Second
		var apiErr *ctm.APIError
		if errors.As(err, &apiErr) && apiErr.RetryAfter > 0 {
			wait = apiErr.RetryAfter
		}
		return &httperr.Error{Status: http.StatusServiceUnavailable, Code: "ctm_rate_limited",
			Message: "CTM asks to slow down; retry later", Cause: err, RetryAfter: wait}
	}
	return httperr.Wrap(http.StatusBadGateway, "ctm_unavailable", "the recording could not be fetched from CTM", err)
}

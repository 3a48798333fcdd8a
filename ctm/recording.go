package ctm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// seekHeaders are the request headers passed on to the recording: what a
// browser player sends to seek.
var seekHeaders = []string{"Range", "If-Range"}

// maxStorageHops bounds the redirects followed after CTM's own.
const maxStorageHops = 3

// OpenRecording fetches a call's recording for streaming. CTM's URL
// answers, with the account's API keys, by a redirect to a short-lived
// storage link; that link is followed without the keys and never
// returned or kept. The Range and If-Range headers of h are passed on so
// a player can seek. The answer is the storage's 200, 206 or 416, for
// the caller to stream and close; any other is an *APIError.
//
// Errors never quote the recording's URLs: they identify a call.
func (c *Client) OpenRecording(ctx context.Context, account int64, recordingURL string,
	h http.Header) (*http.Response, error) {
	const path = "recording"
	u, err := url.Parse(recordingURL)
	// Only CTM's API host gets the account's keys. A recording URL comes
	// from webhook data: proxying any host would hand the keys to it, and
	// let a forged or mistaken URL make the service fetch whatever it
	// can reach (internal addresses included) whenever staff press play.
	if err != nil || !c.onAPIHost(u) {
		return nil, &APIError{Path: path, kind: ErrForeignHost}
	}
	creds, ok := c.opts.Keys[account]
	if !ok {
		return nil, &APIError{Path: path, kind: ErrNoCredentials}
	}

	req, err := c.recordingRequest(ctx, u, h)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(creds.AccessKey, creds.SecretKey)
	resp, err := c.media.Do(req)
	if err != nil {
		return nil, unreachable(ctx, path, err)
	}
	if playable(resp.StatusCode) {
		return resp, nil
	}
	if !redirect(resp.StatusCode) {
		defer discard(resp)
		return nil, statusError(resp, path)
	}

	for hop := 0; ; hop++ {
		next, err := location(resp)
		discard(resp)
		if err != nil || hop == maxStorageHops {
			return nil, &APIError{Status: resp.StatusCode, Path: path,
				kind: fmt.Errorf("%w: unusable redirect to the recording", ErrUnavailable)}
		}
		// The storage link is signed already: it gets no credentials.
		req, err := c.recordingRequest(ctx, next, h)
		if err != nil {
			return nil, err
		}
		resp, err = c.media.Do(req)
		if err != nil {
			return nil, unreachable(ctx, "recording storage", err)
		}
		if playable(resp.StatusCode) {
			return resp, nil
		}
		if !redirect(resp.StatusCode) {
			discard(resp)
			return nil, &APIError{Status: resp.StatusCode, Path: "recording storage", kind: ErrUnavailable}
		}
	}
}

// onAPIHost says whether u is on the configured API's scheme and host.
func (c *Client) onAPIHost(u *url.URL) bool {
	return u.Scheme == c.base.Scheme && strings.EqualFold(u.Host, c.base.Host) && u.User == nil
}

func (c *Client) recordingRequest(ctx context.Context, u *url.URL, h http.Header) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &APIError{Path: "recording", kind: fmt.Errorf("%w: bad recording URL", ErrRefused)}
	}
	for _, name := range seekHeaders {
		if v := h.Get(name); v != "" {
			req.Header.Set(name, v)
		}
	}
	req.Header.Set("User-Agent", "ctmflow")
	return req, nil
}

func location(resp *http.Response) (*url.URL, error) {
	loc, err := resp.Location()
	if err != nil {
		return nil, err
	}
	if loc.Scheme != "https" && loc.Scheme != "http" {
		return nil, errors.New("redirect is not http(s)")
	}
	return loc, nil
}

func playable(code int) bool {
	return code == http.StatusOK || code == http.StatusPartialContent ||
		code == http.StatusRequestedRangeNotSatisfiable
}

func redirect(code int) bool {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

func unreachable(ctx context.Context, path string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return &APIError{Path: path, kind: fmt.Errorf("%w: %v", ErrUnavailable, trimURLError(err))}
}

func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	_ = resp.Body.Close()
}

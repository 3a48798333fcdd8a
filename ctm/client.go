package ctm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// DefaultAPIURL is the base URL of CTM's REST API.
const DefaultAPIURL = "https://api.calltrackingmetrics.com"

// MaxPerPage is the largest page CTM's call list serves.
const MaxPerPage = 150

// Credentials are one CTM account's API keys, sent as HTTP Basic auth.
type Credentials struct {
	AccessKey string
	SecretKey string
}

// Errors of the REST client, told apart with errors.Is. Each *APIError
// unwraps to one of them.
var (
	// ErrNoCredentials means no API keys are configured for the account.
	ErrNoCredentials = errors.New("no CTM API keys for the account")
	// ErrUnauthorized means CTM refused the keys (401, or 403 for an
	// account they do not reach). Retrying cannot help; a person must.
	ErrUnauthorized = errors.New("CTM refused the API keys")
	// ErrNotFound means CTM does not know the call (404).
	ErrNotFound = errors.New("not found at CTM")
	// ErrRateLimited means CTM asked us to slow down (429); see
	// APIError.RetryAfter.
	ErrRateLimited = errors.New("rate limited by CTM")
	// ErrUnavailable means CTM failed (5xx) or could not be reached.
	ErrUnavailable = errors.New("CTM API unavailable")
	// ErrRefused is any other 4xx: our request is wrong.
	ErrRefused = errors.New("CTM refused the request")
	// ErrForeignHost means a recording URL is not on CTM's API host.
	ErrForeignHost = errors.New("recording URL is not on CTM's API host")
)

// APIError is a failed request to CTM's API. Its text holds the path
// (account and call ids) and the status, never a response body, which
// could quote a caller.
type APIError struct {
	Status int
	Path   string
	// RetryAfter is CTM's Retry-After on a 429; zero when it gave none.
	RetryAfter time.Duration
	kind       error
}

func (e *APIError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("ctm api %s: %v", e.Path, e.kind)
	}
	return fmt.Sprintf("ctm api %s: status %d: %v", e.Path, e.Status, e.kind)
}

// Unwrap returns the error's class, e.g. ErrRateLimited.
func (e *APIError) Unwrap() error { return e.kind }

// ClientOptions configure a Client.
type ClientOptions struct {
	// BaseURL of the API. Default DefaultAPIURL.
	BaseURL string
	// Keys are the API keys of each account.
	Keys map[int64]Credentials
	// Retries is how often one request is retried after a 429, a 5xx or
	// a network failure, honouring Retry-After. Default 0: activities
	// leave retrying to Temporal.
	Retries int
	// MaxWait bounds the time one request may spend retrying, waits
	// included; a Retry-After beyond it is returned as ErrRateLimited.
	// Default 2m.
	MaxWait time.Duration
	// Timeout bounds one JSON request. Default 30s.
	Timeout time.Duration
	// OnRetry, when set, is told of each retry and its wait.
	OnRetry func(err error, wait time.Duration)
	// Logger receives debug lines (paths and statuses only).
	Logger *slog.Logger
}

// Client talks to CTM's REST API: a call, the call list, a call's sale,
// and recordings.
type Client struct {
	opts ClientOptions
	base *url.URL
	// api makes JSON requests; media fetches recordings, which may stream
	// for minutes. Neither follows redirects by itself: see
	// OpenRecording.
	api   *http.Client
	media *http.Client
}

// NewClient returns a client for the API at opts.BaseURL.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.BaseURL == "" {
		opts.BaseURL = DefaultAPIURL
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 2 * time.Minute
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	base, err := url.Parse(strings.TrimRight(opts.BaseURL, "/"))
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("CTM API URL must be an http(s) URL, got %q", opts.BaseURL)
	}
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.ResponseHeaderTimeout = opts.Timeout
	return &Client{
		opts:  opts,
		base:  base,
		api:   &http.Client{Timeout: opts.Timeout, CheckRedirect: noRedirect, Transport: transport},
		media: &http.Client{CheckRedirect: noRedirect, Transport: transport},
	}, nil
}

// HasKeys says whether the client can talk to CTM for the account.
func (c *Client) HasKeys(account int64) bool {
	_, ok := c.opts.Keys[account]
	return ok
}

// GetCall returns one call object as CTM's API sends it, the same object
// as a webhook's body.
func (c *Client) GetCall(ctx context.Context, account, callID int64) ([]byte, error) {
	path := fmt.Sprintf("/api/v1/accounts/%d/calls/%d.json", account, callID)
	body, err := c.getJSON(ctx, account, path, nil)
	if err != nil {
		return nil, err
	}
	return unwrapObject(body, "call")
}

// GetSale returns a call's sale object (its score), as CTM sends it.
func (c *Client) GetSale(ctx context.Context, account, callID int64) (json.RawMessage, error) {
	path := fmt.Sprintf("/api/v1/accounts/%d/calls/%d/sale.json", account, callID)
	body, err := c.getJSON(ctx, account, path, nil)
	if err != nil {
		return nil, err
	}
	return unwrapObject(body, "sale")
}

// ListQuery selects a page of an account's calls.
type ListQuery struct {
	// StartDate and EndDate are days, inclusive, as CTM filters them.
	StartDate, EndDate time.Time
	// Page counts from 1.
	Page int
	// PerPage is at most MaxPerPage; 0 means MaxPerPage.
	PerPage int
}

// CallPage is one page of an account's calls.
type CallPage struct {
	// Calls are the call objects as CTM sent them.
	Calls      []json.RawMessage
	Page       int
	TotalPages int
	// NextPage is the page to ask for next; 0 when this is the last.
	NextPage int
}

// ListCalls returns one page of the account's calls.
func (c *Client) ListCalls(ctx context.Context, account int64, q ListQuery) (CallPage, error) {
	if q.Page < 1 {
		q.Page = 1
	}
	if q.PerPage <= 0 || q.PerPage > MaxPerPage {
		q.PerPage = MaxPerPage
	}
	v := url.Values{}
	v.Set("start_date", q.StartDate.Format(time.DateOnly))
	v.Set("end_date", q.EndDate.Format(time.DateOnly))
	v.Set("page", strconv.Itoa(q.Page))
	v.Set("per_page", strconv.Itoa(q.PerPage))
	path := fmt.Sprintf("/api/v1/accounts/%d/calls.json", account)
	body, err := c.getJSON(ctx, account, path, v)
	if err != nil {
		return CallPage{}, err
	}

	var raw struct {
		Calls      []json.RawMessage `json:"calls"`
		Page       json.RawMessage   `json:"page"`
		TotalPages json.RawMessage   `json:"total_pages"`
		NextPage   json.RawMessage   `json:"next_page"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return CallPage{}, &APIError{Status: http.StatusOK, Path: path, kind: errors.New("call list is not JSON")}
	}
	page := CallPage{
		Calls:      raw.Calls,
		Page:       pageNumber(raw.Page),
		TotalPages: pageNumber(raw.TotalPages),
		NextPage:   pageNumber(raw.NextPage),
	}
	if page.Page == 0 {
		page.Page = q.Page
	}
	// A next page that does not move forward would loop for ever.
	if page.NextPage <= page.Page {
		page.NextPage = 0
	}
	return page, nil
}

// pageNumber reads a page number sent as a number, a numeric string, or
// a URL with a page parameter (CTM's next_page has been seen as each);
// anything else, null included, is 0.
func pageNumber(raw json.RawMessage) int {
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if v, err := n.Int64(); err == nil {
			return int(v)
		}
	}
	var s string
	if json.Unmarshal(raw, &s) != nil || s == "" {
		return 0
	}
	if v, err := strconv.Atoi(s); err == nil {
		return v
	}
	if u, err := url.Parse(s); err == nil {
		if v, err := strconv.Atoi(u.Query().Get("page")); err == nil {
			return v
		}
	}
	return 0
}

// unwrapObject returns body's inner object when CTM wraps it as
// {"call": {...}}, and body itself otherwise.
func unwrapObject(body []byte, key string) ([]byte, error) {
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(body, &outer); err != nil {
		return nil, fmt.Errorf("ctm api: answer is not a JSON object")
	}
	if _, hasID := outer["id"]; !hasID {
		if inner, ok := outer[key]; ok && bytes.HasPrefix(bytes.TrimSpace(inner), []byte("{")) {
			return inner, nil
		}
	}
	return body, nil
}

func (c *Client) getJSON(ctx context.Context, account int64, path string, q url.Values) ([]byte, error) {
	creds, ok := c.opts.Keys[account]
	if !ok {
		return nil, &APIError{Path: path, kind: ErrNoCredentials}
	}
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	once := func() ([]byte, error) { return c.fetch(ctx, creds, u.String(), path) }
	if c.opts.Retries <= 0 {
		return once()
	}

	body, err := backoff.Retry(ctx, func() ([]byte, error) {
		body, err := once()
		return body, retryClass(err)
	},
		backoff.WithMaxTries(uint(c.opts.Retries+1)),
		backoff.WithMaxElapsedTime(c.opts.MaxWait),
		backoff.WithNotify(func(err error, wait time.Duration) {
			if c.opts.OnRetry != nil {
				c.opts.OnRetry(err, wait)
			}
		}))
	var ra *rateLimited
	if errors.As(err, &ra) {
		err = ra.APIError
	}
	return body, err
}

// rateLimited carries CTM's Retry-After to the backoff library, which
// then waits that long instead of its own interval.
type rateLimited struct {
	*APIError
	wait *backoff.RetryAfterError
}

func (r *rateLimited) Unwrap() []error { return []error{r.APIError, r.wait} }

// retryClass marks which failures are worth retrying: a 429 (after
// Retry-After), a 5xx and a network failure are; the rest are not.
func retryClass(err error) error {
	var apiErr *APIError
	if err == nil || !errors.As(err, &apiErr) {
		return err
	}
	switch {
	case errors.Is(apiErr, ErrRateLimited) && apiErr.RetryAfter > 0:
		secs := int((apiErr.RetryAfter + time.Second - 1) / time.Second)
		return &rateLimited{APIError: apiErr,
			wait: &backoff.RetryAfterError{Duration: time.Duration(secs) * time.Second}}
	case errors.Is(apiErr, ErrRateLimited), errors.Is(apiErr, ErrUnavailable):
		return err
	}
	return backoff.Permanent(err)
}

// maxJSONBody caps an answer: a page of 150 calls with long transcripts
// stays far below it.
const maxJSONBody = 64 << 20

func (c *Client) fetch(ctx context.Context, creds Credentials, rawURL, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("ctm api %s: %w", path, err)
	}
	req.SetBasicAuth(creds.AccessKey, creds.SecretKey)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "ctmflow")

	resp, err := c.api.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The transport's error quotes only our own URL (ids, no PHI).
		return nil, &APIError{Path: path, kind: fmt.Errorf("%w: %v", ErrUnavailable, trimURLError(err))}
	}
	defer resp.Body.Close()
	c.opts.Logger.Debug("ctm api answered", "path", path, "status", resp.StatusCode)
	if err := statusError(resp, path); err != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONBody))
	if err != nil {
		return nil, &APIError{Status: resp.StatusCode, Path: path, kind: fmt.Errorf("%w: reading answer: %v",
			ErrUnavailable, err)}
	}
	return body, nil
}

// statusError classifies a non-2xx answer.
func statusError(resp *http.Response, path string) error {
	code := resp.StatusCode
	e := &APIError{Status: code, Path: path}
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusUnauthorized, code == http.StatusForbidden:
		e.kind = ErrUnauthorized
	case code == http.StatusNotFound:
		e.kind = ErrNotFound
	case code == http.StatusTooManyRequests:
		e.kind = ErrRateLimited
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	case code >= 500:
		e.kind = ErrUnavailable
	default:
		e.kind = ErrRefused
	}
	return e
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return at.Sub(now)
	}
	return 0
}

// trimURLError drops the URL a *url.Error repeats, keeping the cause.
func trimURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

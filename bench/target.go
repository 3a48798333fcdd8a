package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/ctmflow/ctmflow/api"
	"github.com/ctmflow/ctmflow/ctm"
)

// Target is a running ctmflow: where to post webhooks and read the API.
type Target struct {
	// URL is the base of the webhook and API server.
	URL string
	// Token is the API bearer token.
	Token string
	// AccountID and Secret sign the webhooks.
	AccountID int64
	Secret    string

	http *http.Client
}

func (t *Target) client() *http.Client {
	if t.http == nil {
		t.http = &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				MaxIdleConns:        512,
				MaxIdleConnsPerHost: 512,
				IdleConnTimeout:     time.Minute,
			},
		}
	}
	return t.http
}

// post sends one signed webhook and returns its status and ack latency:
// from the request's start to the answer's last byte.
func (t *Target) post(ctx context.Context, path string, body []byte) (int, time.Duration, error) {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL+"/webhooks/ctm/"+path, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(ctm.HeaderTime, ts)
	req.Header.Set(ctm.HeaderSignature, ctm.Sign(t.Secret, ts, body))

	start := time.Now()
	resp, err := t.client().Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("posting %s: %w", path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start), nil
}

// call reads the call with CTM id ctmID from the lead of phone, or nil
// while there is none.
func (t *Target) call(ctx context.Context, phone string, ctmID int64) (*api.Call, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		t.URL+"/api/leads?limit=1&phone="+url.QueryEscape(phone), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+t.Token)
	resp, err := t.client().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading leads: %s", resp.Status)
	}
	var out api.LeadList
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decoding leads: %w", err)
	}
	for _, l := range out.Leads {
		for i := range l.Calls {
			if l.Calls[i].CTMCallID == ctmID {
				return &l.Calls[i], nil
			}
		}
	}
	return nil, nil
}

// waitCall polls until the call satisfies cond, returning when it first
// saw it. Polls start every `every` and back off by a quarter each time,
// up to 50 ms: fine resolution while the answer is near (about 6 ms apart
// 25 ms in), and no storm of polls when the system under test falls
// behind, which would slow it further. Polling every 2 ms for the first
// 100 ms was tried: at saturation the polls cost a fifth of the
// throughput.
func (t *Target) waitCall(
	ctx context.Context, phone string, ctmID int64,
	every time.Duration, cond func(*api.Call) bool,
) (time.Time, error) {
	for {
		c, err := t.call(ctx, phone, ctmID)
		if err != nil {
			return time.Time{}, err
		}
		if c != nil && cond(c) {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("waiting for call %d: %w", ctmID, ctx.Err())
		case <-time.After(every):
		}
		every = min(every*5/4, 50*time.Millisecond)
	}
}

// Package reconcile fills the gaps CTM's webhooks left: calls that never
// reached ctmflow, ends that never came, and transcripts, recordings or
// ratings that came after the last webhook. It walks CTM's call list for
// one account and period, compares each call with the CRM, and stores
// what is missing as inbox deliveries, which the relay hands to the call
// workflows like any webhook.
//
// Running it twice adds nothing: a gap already filled is not seen again,
// and a gap whose delivery still waits for its workflow is recognised by
// the inbox's dedupe on the body (the same CTM object hashes the same).
// The workflows apply deliveries idempotently besides.
package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
)

// Options say what to reconcile.
type Options struct {
	CTM       *ctm.Client
	Store     *store.Store
	AccountID int64
	// Since and Until bound the calls' start times: [Since, Until).
	Since, Until time.Time
	// PerPage is the page size asked of CTM; 0 means ctm.MaxPerPage.
	PerPage int
	// Scores asks CTM for the sale of each ended call that has no star
	// rating anywhere: one more request per such call.
	Scores bool
	// Progress, when set, is told after each page.
	Progress func(Summary)
}

// Summary counts what a run found and did. A call counts under its
// first gap only: a missing call's delivery also brings its end and
// transcript.
type Summary struct {
	// Page is the page just read, of Pages as CTM counts them;
	// PagesRead counts the pages read.
	Page, Pages, PagesRead int
	// Listed counts the call objects CTM listed; Checked, those that
	// started within the period.
	Listed, Checked int
	// Unusable counts objects CTM listed that could not be read.
	Unusable int

	MissingCalls       int
	MissingTexts       int
	MissingEnds        int
	MissingTranscripts int
	MissingRecordings  int
	MissingRatings     int

	// Queued counts deliveries stored by this run; AlreadyQueued, gaps
	// whose delivery an earlier run stored and a workflow has not applied
	// yet.
	Queued, AlreadyQueued int
	// DeliveryIDs are the deliveries this run stored or found queued.
	DeliveryIDs []int64
}

// Gaps is the number of gaps found.
func (s Summary) Gaps() int {
	return s.MissingCalls + s.MissingTexts + s.MissingEnds + s.MissingTranscripts +
		s.MissingRecordings + s.MissingRatings
}

// maxPages stops a list that never ends (a CTM bug, or a loop).
const maxPages = 10_000

// Run reconciles the account's calls of the period.
func Run(ctx context.Context, opts Options) (Summary, error) {
	var sum Summary
	if !opts.Until.After(opts.Since) {
		return sum, errors.New("the period is empty: until must be after since")
	}
	// CTM filters by day, in the account's time zone (unverified): ask a
	// day more each side, and filter on the exact start time here.
	q := ctm.ListQuery{
		StartDate: opts.Since.UTC().AddDate(0, 0, -1),
		EndDate:   opts.Until.UTC().AddDate(0, 0, 1),
		Page:      1,
		PerPage:   opts.PerPage,
	}
	for q.Page != 0 {
		if sum.PagesRead == maxPages {
			return sum, fmt.Errorf("CTM's call list did not end after %d pages", maxPages)
		}
		page, err := opts.CTM.ListCalls(ctx, opts.AccountID, q)
		if err != nil {
			return sum, fmt.Errorf("listing calls, page %d: %w", q.Page, err)
		}
		sum.PagesRead++
		sum.Page, sum.Pages = page.Page, max(page.TotalPages, page.Page)
		for _, raw := range page.Calls {
			if err := check(ctx, opts, raw, &sum); err != nil {
				return sum, err
			}
		}
		if opts.Progress != nil {
			opts.Progress(sum)
		}
		q.Page = page.NextPage
	}
	return sum, nil
}

// check compares one call object with the CRM and queues what is missing.
func check(ctx context.Context, opts Options, raw json.RawMessage, sum *Summary) error {
	sum.Listed++
	c, err := ctm.Parse(raw)
	if err != nil || (c.AccountID != 0 && c.AccountID != opts.AccountID) {
		sum.Unusable++
		return nil
	}
	if started := c.StartedAt(); !started.IsZero() && (started.Before(opts.Since) || !started.Before(opts.Until)) {
		return nil
	}
	sum.Checked++

	kind, body, err := gap(ctx, opts, c, raw, sum)
	if err != nil || kind == "" {
		return err
	}

	hash := sha256.Sum256(body)
	d := &models.Delivery{
		AccountID:  opts.AccountID,
		Kind:       kind,
		BodySHA256: hex.EncodeToString(hash[:]),
		CTMID:      c.ID,
		Body:       body,
		// The API's object is CTM's state now: it ranks as sent now.
		CTMTime: strconv.FormatInt(time.Now().Unix(), 10),
	}
	dup, err := opts.Store.SaveDelivery(ctx, d, "", 0)
	if err != nil {
		return fmt.Errorf("queueing call %d: %w", c.ID, err)
	}
	if dup {
		sum.AlreadyQueued++
	} else {
		sum.Queued++
	}
	sum.DeliveryIDs = append(sum.DeliveryIDs, d.ID)
	return nil
}

// gap finds what the CRM lacks of c, counts it, and returns the delivery
// kind and body that fill it; an empty kind means nothing is missing.
//
// An ended call's object is queued as a call-end whatever gap it fills:
// the inbox dedupes by kind and body, so one object is queued once even
// when a later run sees another gap in it (its end applied meanwhile,
// its transcript not yet). The workflows treat an ended call's object
// the same under either kind.
func gap(ctx context.Context, opts Options, c *ctm.Call, raw json.RawMessage, sum *Summary) (string, []byte, error) {
	if c.IsMessage() {
		known, err := opts.Store.HasMessage(ctx, opts.AccountID, c.ID)
		if err != nil || known {
			return "", nil, err
		}
		sum.MissingTexts++
		return models.KindTextMessage, raw, nil
	}

	call, err := opts.Store.GetCall(ctx, opts.AccountID, c.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		sum.MissingCalls++
		if c.Finished() {
			return models.KindCallEnd, raw, nil
		}
		return models.KindCallStart, raw, nil
	case err != nil:
		return "", nil, err
	case !c.Finished():
		return "", nil, nil
	case call.Stage != models.StageEnded:
		sum.MissingEnds++
		return models.KindCallEnd, raw, nil
	case c.TranscriptionText != "" && call.Transcript == "":
		sum.MissingTranscripts++
		return models.KindCallEnd, raw, nil
	case c.Audio != "" && call.RecordingURL == "":
		sum.MissingRecordings++
		return models.KindCallEnd, raw, nil
	case c.Sale != nil && c.Sale.Score != nil && call.StarRating == nil:
		sum.MissingRatings++
		return models.KindCallEnd, raw, nil
	case opts.Scores && c.Sale == nil && call.StarRating == nil:
		return scored(ctx, opts, c, raw, sum)
	}
	return "", nil, nil
}

// scored asks CTM for the call's sale and, when it carries a rating,
// returns the call object with it.
func scored(ctx context.Context, opts Options, c *ctm.Call, raw json.RawMessage, sum *Summary) (string, []byte, error) {
	sale, err := opts.CTM.GetSale(ctx, opts.AccountID, c.ID)
	switch {
	case errors.Is(err, ctm.ErrNotFound):
		return "", nil, nil
	case err != nil:
		return "", nil, fmt.Errorf("asking the sale of call %d: %w", c.ID, err)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", nil, nil
	}
	obj["sale"] = sale
	body, err := json.Marshal(obj)
	if err != nil {
		return "", nil, err
	}
	withSale, err := ctm.Parse(body)
	if err != nil || withSale.Sale == nil || withSale.Sale.Score == nil {
		return "", nil, nil
	}
	sum.MissingRatings++
	return models.KindCallEnd, body, nil
}

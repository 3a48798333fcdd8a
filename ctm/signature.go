package ctm

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Header names CTM signs its deliveries with.
const (
	HeaderTime      = "X-CTM-Time"
	HeaderSignature = "X-CTM-Signature"
)

// DefaultMaxSkew is how far X-CTM-Time may be from our clock. CTM documents
// no replay window; five minutes bounds a replayed delivery without
// rejecting honest clock drift.
const DefaultMaxSkew = 5 * time.Minute

// Verification errors. Each is answered 401 with its own code: a missing
// header, a clock off by minutes or an account whose secret was never
// configured are setup mistakes the sender must be able to tell apart.
// None says anything about a secret; CTM account ids are no secret, being
// in every body.
var (
	ErrSignatureMissing = errors.New("missing signature or timestamp header")
	ErrTimestampInvalid = errors.New("unreadable timestamp")
	ErrTimestampSkew    = errors.New("timestamp outside the replay window")
	ErrSignatureInvalid = errors.New("signature does not match")
	ErrUnknownAccount   = errors.New("no secret configured for the account")
)

// Sign returns CTM's signature of a delivery: base64 of the HMAC-SHA1,
// keyed with the account's secret, of the timestamp followed by the body.
func Sign(secret, ctmTime string, body []byte) string {
	return base64.StdEncoding.EncodeToString(mac(secret, ctmTime, body))
}

func mac(secret, ctmTime string, body []byte) []byte {
	h := hmac.New(sha1.New, []byte(secret))
	h.Write([]byte(ctmTime))
	h.Write(body)
	return h.Sum(nil)
}

// ParseTime reads X-CTM-Time. CTM's format is unverified: epoch seconds,
// epoch milliseconds and RFC 3339 are all accepted.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > 1e12 {
			return time.UnixMilli(n).UTC(), nil
		}
		return time.Unix(n, 0).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, ErrTimestampInvalid
}

// Verifier checks CTM signatures against per-account secrets.
type Verifier struct {
	secrets map[int64]string
	// accounts groups accounts by secret, so that trying every secret
	// computes each HMAC once.
	accounts map[string][]int64
	maxSkew  time.Duration
	now      func() time.Time
}

// NewVerifier returns a Verifier for the given account → secret map.
// maxSkew 0 means DefaultMaxSkew.
func NewVerifier(secrets map[int64]string, maxSkew time.Duration) *Verifier {
	if maxSkew <= 0 {
		maxSkew = DefaultMaxSkew
	}
	accounts := make(map[string][]int64)
	for account, secret := range secrets {
		accounts[secret] = append(accounts[secret], account)
	}
	for _, ids := range accounts {
		slices.Sort(ids)
	}
	return &Verifier{
		secrets:  secrets,
		accounts: accounts,
		maxSkew:  maxSkew,
		now:      time.Now,
	}
}

// Verify checks a delivery's timestamp and signature over the raw body,
// before anything reads the body. accountHint, when non-zero, names the
// account whose secret to use; otherwise every configured secret is tried,
// each compared in constant time and without stopping at the first match,
// so that timing tells nothing about which secret exists. Verify returns
// the accounts whose secret signed the body (several accounts may share
// one secret).
func (v *Verifier) Verify(ctmTime, signature string, body []byte, accountHint int64) ([]int64, error) {
	if ctmTime == "" || signature == "" {
		return nil, ErrSignatureMissing
	}
	sent, err := ParseTime(ctmTime)
	if err != nil {
		return nil, err
	}
	if d := v.now().Sub(sent); d > v.maxSkew || d < -v.maxSkew {
		return nil, ErrTimestampSkew
	}

	got, err := base64.StdEncoding.DecodeString(strings.TrimSpace(signature))
	if err != nil {
		return nil, ErrSignatureInvalid
	}

	if accountHint != 0 {
		secret, ok := v.secrets[accountHint]
		if !ok {
			return nil, ErrUnknownAccount
		}
		if !hmac.Equal(got, mac(secret, ctmTime, body)) {
			return nil, ErrSignatureInvalid
		}
		return []int64{accountHint}, nil
	}

	var matched []int64
	for secret, accounts := range v.accounts {
		if hmac.Equal(got, mac(secret, ctmTime, body)) {
			matched = accounts
		}
	}
	if matched == nil {
		return nil, ErrSignatureInvalid
	}
	return matched, nil
}

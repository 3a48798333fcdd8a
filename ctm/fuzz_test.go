package ctm

import (
	"bytes"
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The seed corpora live in testdata/fuzz, so plain `go test` runs them.
// Explore further with
//
//	go test -run '^$' -fuzz FuzzParse -fuzztime 1m ./ctm
//	go test -run '^$' -fuzz FuzzVerify -fuzztime 1m ./ctm

// FuzzParse feeds the payload parser arbitrary bodies. Whatever arrives,
// it must not panic, must fail only with its two sentinels, and must
// accept nothing but a single JSON object with a positive id.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := Parse(body)
		if err != nil {
			if !errors.Is(err, ErrNotJSONObject) && !errors.Is(err, ErrNoID) {
				t.Fatalf("Parse failed with %v, want ErrNotJSONObject or ErrNoID", err)
			}
			if c != nil {
				t.Fatal("Parse returned a call with its error")
			}
			return
		}

		if c.ID <= 0 {
			t.Fatalf("accepted id %d, want a positive id", c.ID)
		}
		if !json.Valid(body) {
			t.Fatal("accepted a body that is not valid JSON")
		}
		if trimmed := bytes.TrimSpace(body); len(trimmed) == 0 || trimmed[0] != '{' {
			t.Fatal("accepted a body that is not an object")
		}
		if c.Sale != nil && c.Sale.Score != nil && (*c.Sale.Score < 1 || *c.Sale.Score > 5) {
			t.Fatalf("star rating %d outside 1–5", *c.Sale.Score)
		}
		for _, tag := range c.Tags {
			if tag == "" || tag != strings.TrimSpace(tag) {
				t.Fatalf("tag %q is empty or untrimmed", tag)
			}
		}
		again, err := Parse(body)
		if err != nil || !reflect.DeepEqual(c, again) {
			t.Fatal("parsing the same body twice gave different results")
		}
	})
}

// FuzzVerify checks the signature verifier against arbitrary timestamps,
// bodies and signatures: it must not panic, must accept only the HMAC of
// the exact timestamp and body under a configured secret within the
// replay window, and must accept every correctly signed body.
func FuzzVerify(f *testing.F) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, secret, ctmTime string, body []byte, signature string, hint int64) {
		secret = "k" + secret // configuration refuses empty secrets
		const other = "k-secret-of-account-8"
		secrets := map[int64]string{7: secret, 8: other}
		v := NewVerifier(secrets, 0)
		v.now = func() time.Time { return now }

		// Arbitrary input: whatever is accepted must be genuine.
		accounts, err := v.Verify(ctmTime, signature, body, hint)
		if err == nil {
			if len(accounts) == 0 {
				t.Fatal("accepted without naming an account")
			}
			sent, terr := ParseTime(ctmTime)
			if terr != nil || sent.Sub(now).Abs() > DefaultMaxSkew {
				t.Fatalf("accepted timestamp %q outside the window", ctmTime)
			}
			got, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(signature))
			if derr != nil {
				t.Fatal("accepted a signature that is not base64")
			}
			for _, a := range accounts {
				if !hmac.Equal(got, mac(secrets[a], ctmTime, body)) {
					t.Fatalf("accepted a signature account %d's secret did not make", a)
				}
			}
		}

		// The genuine signature of this body is accepted, by the account
		// that signed it, and by no other.
		ts := strconv.FormatInt(now.Unix(), 10)
		sig := Sign(secret, ts, body)
		accounts, err = v.Verify(ts, sig, body, 0)
		if err != nil || !slices.Contains(accounts, 7) {
			t.Fatalf("genuine signature refused: %v (accounts %v)", err, accounts)
		}
		if _, err := v.Verify(ts, sig, body, 7); err != nil {
			t.Fatalf("genuine signature refused with the account named: %v", err)
		}
		if secret != other {
			if _, err := v.Verify(ts, sig, body, 8); err == nil {
				t.Fatal("account 8 accepted account 7's signature")
			}
		}

		// Any change to the body or the timestamp breaks it.
		tampered := append(slices.Clone(body), 'x')
		if _, err := v.Verify(ts, sig, tampered, 0); err == nil {
			t.Fatal("accepted a tampered body")
		}
		if _, err := v.Verify(strconv.FormatInt(now.Unix()+1, 10), sig, body, 0); err == nil {
			t.Fatal("accepted a signature under another timestamp")
		}

		// A genuine signature from outside the window is refused.
		old := strconv.FormatInt(now.Add(-DefaultMaxSkew-time.Second).Unix(), 10)
		if _, err := v.Verify(old, Sign(secret, old, body), body, 0); !errors.Is(err, ErrTimestampSkew) {
			t.Fatalf("stale signature: got %v, want ErrTimestampSkew", err)
		}
	})
}

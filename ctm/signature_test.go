package ctm

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSignMatchesCTMsScheme(t *testing.T) {
	// base64(HMAC-SHA1("secret", "1700000000" + body)), computed with
	// openssl: printf '1700000000{"id":1}' | openssl dgst -sha1 -hmac secret -binary | base64
	got := Sign("secret", "1700000000", []byte(`{"id":1}`))
	assert.Equal(t, "SGmyX94Cr21L0wlVcRbw6HAsL0k=", got)
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id": 12, "account_id": 7}`)
	ts := strconv.FormatInt(now.Unix(), 10)

	v := NewVerifier(map[int64]string{7: "seven", 8: "eight", 9: "eight"}, 0)
	v.now = func() time.Time { return now }

	// at renders now+d as X-CTM-Time.
	at := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	rfc := now.UTC().Format(time.RFC3339)
	other := []byte(`{"id": 13, "account_id": 7}`)

	cases := []struct {
		name    string
		ts, sig string
		body    []byte
		hint    int64
		want    []int64
		wantErr error
	}{
		{name: "good signature", ts: ts, sig: Sign("seven", ts, body), body: body, want: []int64{7}},
		{name: "good signature with the account named",
			ts: ts, sig: Sign("seven", ts, body), body: body, hint: 7, want: []int64{7}},
		{name: "a shared secret names every account that has it",
			ts: ts, sig: Sign("eight", ts, body), body: body, want: []int64{8, 9}},
		{name: "millisecond timestamps",
			ts: ts + "000", sig: Sign("seven", ts+"000", body), body: body, want: []int64{7}},
		{name: "RFC 3339 timestamps", ts: rfc, sig: Sign("seven", rfc, body), body: body, want: []int64{7}},
		{name: "wrong secret", ts: ts, sig: Sign("nope", ts, body), body: body, wantErr: ErrSignatureInvalid},
		{name: "named account's secret differs",
			ts: ts, sig: Sign("seven", ts, body), body: body, hint: 8, wantErr: ErrSignatureInvalid},
		{name: "unknown named account",
			ts: ts, sig: Sign("seven", ts, body), body: body, hint: 99, wantErr: ErrUnknownAccount},
		{name: "body changed after signing",
			ts: ts, sig: Sign("seven", ts, body), body: other, wantErr: ErrSignatureInvalid},
		{name: "timestamp changed after signing",
			ts: at(-time.Second), sig: Sign("seven", ts, body), body: body, wantErr: ErrSignatureInvalid},
		{name: "signature not base64", ts: ts, sig: "***", body: body, wantErr: ErrSignatureInvalid},
		{name: "no signature", ts: ts, body: body, wantErr: ErrSignatureMissing},
		{name: "no timestamp", sig: Sign("seven", ts, body), body: body, wantErr: ErrSignatureMissing},
		{name: "timestamp not a time",
			ts: "yesterday", sig: Sign("seven", "yesterday", body), body: body, wantErr: ErrTimestampInvalid},
		{name: "six minutes old",
			ts: at(-6 * time.Minute), sig: Sign("seven", at(-6*time.Minute), body), body: body,
			wantErr: ErrTimestampSkew},
		{name: "six minutes ahead",
			ts: at(6 * time.Minute), sig: Sign("seven", at(6*time.Minute), body), body: body,
			wantErr: ErrTimestampSkew},
		{name: "four minutes old is fine",
			ts: at(-4 * time.Minute), sig: Sign("seven", at(-4*time.Minute), body), body: body, want: []int64{7}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.Verify(tc.ts, tc.sig, tc.body, tc.hint)
			if tc.wantErr != nil {
				assert.True(t, errors.Is(err, tc.wantErr), "got %v, want %v", err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

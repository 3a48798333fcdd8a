package triggers_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/triggers"
)

// TestSignSpecVector checks Sign against the example of the Standard
// Webhooks specification's reference libraries.
func TestSignSpecVector(t *testing.T) {
	key, err := triggers.DecodeSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	require.NoError(t, err)
	got := triggers.Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0),
		[]byte(`{"test": 2432232314}`))
	assert.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", got)
}

func TestSignatureHeaderDuringRotation(t *testing.T) {
	oldKey, err := triggers.DecodeSecret(triggers.NewSecret())
	require.NoError(t, err)
	newKey, err := triggers.DecodeSecret(triggers.NewSecret())
	require.NoError(t, err)
	ts := time.Unix(1_800_000_000, 0)
	body := []byte(`{"type":"lead.created"}`)

	header := triggers.SignatureHeader([][]byte{newKey, oldKey}, "msg_1", ts, body)
	sigs := strings.Split(header, " ")
	require.Len(t, sigs, 2, "got %q, want two space-separated signatures", header)
	assert.True(t, verify(oldKey, "msg_1", "1800000000", body, header), "the old secret verifies")
	assert.True(t, verify(newKey, "msg_1", "1800000000", body, header), "the new secret verifies")
	assert.False(t, verify(newKey, "msg_2", "1800000000", body, header), "another id does not")
}

// verify checks a webhook-signature header the way a receiver would,
// written here apart from the code under test.
func verify(key []byte, id, ts string, body []byte, header string) bool {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(header) {
		b64, ok := strings.CutPrefix(sig, "v1,")
		if !ok {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

func TestSecrets(t *testing.T) {
	s := triggers.NewSecret()
	assert.True(t, strings.HasPrefix(s, "whsec_"))
	key, err := triggers.DecodeSecret(s)
	require.NoError(t, err)
	assert.Len(t, key, 32)
	assert.NotEqual(t, s, triggers.NewSecret(), "two secrets differ")

	bad := map[string]string{
		"no prefix":    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"not base64":   "whsec_not*base64!",
		"too short":    "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 16)),
		"too long":     "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 65)),
		"empty":        "",
		"prefix alone": "whsec_",
	}
	for name, secret := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := triggers.DecodeSecret(secret)
			assert.ErrorIs(t, err, triggers.ErrSecret)
		})
	}
}

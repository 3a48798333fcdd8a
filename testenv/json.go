package testenv

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// WithFields returns a JSON object body with fields set, or removed for a
// nil value: a variation of a sample webhook.
func WithFields(t testing.TB, body []byte, fields map[string]any) []byte {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(body, &m))
	for k, v := range fields {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	out, err := json.Marshal(m)
	require.NoError(t, err)
	return out
}

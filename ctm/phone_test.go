package ctm

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestNormalizePhone(t *testing.T) {
	cases := []struct {
		raw, region, want string
	}{
		{"+12395550171", "US", "+12395550171"},
		{"(239) 555-0171", "US", "+12395550171"},
		{"239.555.0171", "US", "+12395550171"},
		{"1-239-555-0171", "US", "+12395550171"},
		{"2395550171", "", "+12395550171"},
		{"+44 20 7946 0958", "US", "+442079460958"},
		{"020 7946 0958", "GB", "+442079460958"},
	}
	for _, tc := range cases {
		t.Run(tc.raw, func(t *testing.T) {
			got, err := NormalizePhone(tc.raw, tc.region)
			assert.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}

	for _, bad := range []string{"", "anonymous", "Restricted", "12345", "+1 000 000 0000"} {
		t.Run("rejects "+bad, func(t *testing.T) {
			_, err := NormalizePhone(bad, "US")
			assert.ErrorIs(t, err, ErrInvalidPhone)
			if err != nil && bad != "" {
				assert.NotContains(t, err.Error(), bad, "errors never carry the number")
			}
		})
	}
}

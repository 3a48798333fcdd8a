package ctm

import (
	"errors"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// DefaultRegion is the region assumed for numbers written without a
// country code, such as CTM's older "(239) 555-0171" format.
const DefaultRegion = "US"

// ErrInvalidPhone means a string is not a valid phone number. It never
// carries the number itself: numbers are PHI.
var ErrInvalidPhone = errors.New("not a valid phone number")

// NormalizePhone returns the E.164 form of a phone number written in any
// common format. Numbers without a country code are read in region.
func NormalizePhone(raw, region string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", ErrInvalidPhone
	}
	if region == "" {
		region = DefaultRegion
	}
	n, err := phonenumbers.Parse(raw, region)
	if err != nil || !phonenumbers.IsValidNumber(n) {
		return "", ErrInvalidPhone
	}
	return phonenumbers.Format(n, phonenumbers.E164), nil
}

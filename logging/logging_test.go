package logging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// phoneRenderings are the ways CTM has written one caller's number:
// caller_number (E.164 now, formatted in old payloads),
// caller_number_bare, caller_number_format, and what people and other
// systems make of it.
var phoneRenderings = []string{
	"+12395550171",
	"12395550171",
	"2395550171",
	"(239) 555-0171",
	"(239)555-0171",
	"239-555-0171",
	"239.555.0171",
	"239 555 0171",
	"+1 239-555-0171",
	"+1 (239) 555-0171",
	"1-239-555-0171",
	"%2B12395550171",
}

// leaked reports whether out still holds the number's subscriber digits
// in any rendering.
func leaked(out string) bool {
	digits := strings.NewReplacer(" ", "", "-", "", ".", "", "(", "", ")", "").Replace(out)
	return strings.Contains(digits, "5550171")
}

type caller struct{ Phone string }

type phoneError struct{ number string }

func (e phoneError) Error() string { return "no lead for " + e.number }

func TestNoPhoneNumberReachesTheOutput(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		for _, phone := range phoneRenderings {
			t.Run(format+" "+phone, func(t *testing.T) {
				var buf bytes.Buffer
				l, err := New(&buf, format, "debug")
				require.NoError(t, err)

				l.Info("call from " + phone)
				l.Info("string attr", "caller", phone)
				l.Warn("error attr", KeyError, fmt.Errorf("creating lead: %w", phoneError{phone}))
				l.Info("struct attr", "who", caller{Phone: phone})
				l.Info("group", slog.Group("lead", slog.String("phone", phone)))
				l.With("caller", phone).Info("with attrs")
				l.WithGroup("req").Info("in group", "q", "phone="+phone)
				l.Info("slice", "numbers", []string{phone})

				require.NotEmpty(t, buf.String())
				assert.False(t, leaked(buf.String()), "output holds %q:\n%s", phone, buf.String())
			})
		}
	}
}

func TestNumbersThatArePhones(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, "json", "info")
	require.NoError(t, err)

	// A dependency that logs a number as an integer, under its own key.
	l.Info("lookup", "caller_number", int64(12395550171), "bare", uint64(2395550171))
	assert.False(t, leaked(buf.String()), buf.String())
}

func TestWhatIsNotAPhoneSurvives(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, "json", "info")
	require.NoError(t, err)

	l.Info("delivery stored",
		KeyDeliveryID, int64(4821), KeyCTMID, int64(1850000123), KeyAccountID, int64(2345678901),
		"called_at", "2024-07-28 08:33 AM -04:00",
		"received", "2024-07-28T12:33:05.123+00:00",
		"took", "1.25s", "attempt", 3, "workflow", "CallWorkflow")

	var line map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line))
	assert.EqualValues(t, 4821, line[KeyDeliveryID])
	assert.EqualValues(t, 1850000123, line[KeyCTMID], "ids under our keys are kept")
	assert.EqualValues(t, 2345678901, line[KeyAccountID])
	assert.Equal(t, "2024-07-28 08:33 AM -04:00", line["called_at"])
	assert.Equal(t, "2024-07-28T12:33:05.123+00:00", line["received"])
	assert.Equal(t, "1.25s", line["took"])
}

func TestStandardLibraryLogThroughTheDefault(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, "json", "info")
	require.NoError(t, err)

	prev := slog.Default()
	slog.SetDefault(l)
	t.Cleanup(func() { slog.SetDefault(prev) })

	// Libraries that predate slog write through the log package; once the
	// process sets our logger as slog's default, those lines are redacted
	// too.
	log.Printf("driver: retrying lookup of %s", "+12395550171")
	slog.Info("default logger", "caller", "(239) 555-0171")

	require.Contains(t, buf.String(), "retrying lookup")
	assert.False(t, leaked(buf.String()), buf.String())
}

func TestOneKeyCasing(t *testing.T) {
	for _, key := range []string{
		KeyError, KeyRequestID, KeyDeliveryID, KeyAccountID, KeyCTMID, KeyKind,
		KeyStatus, KeyCode, KeyMethod, KeyPath, KeyDurationMS, KeyAttempt,
		KeyCount, KeyAddr, KeyComponent,
	} {
		assert.Regexp(t, `^[a-z]+(_[a-z]+)*$`, key)
	}
}

func TestNewRejectsUnknownSettings(t *testing.T) {
	_, err := New(&bytes.Buffer{}, "xml", "info")
	assert.Error(t, err)
	_, err = New(&bytes.Buffer{}, "json", "loud")
	assert.Error(t, err)
}

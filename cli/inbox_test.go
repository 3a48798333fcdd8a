package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/testenv"
)

// inboxFixture stores three deliveries received at fixed times: two
// pending, one dispatched.
func inboxFixture(t *testing.T) (*store.Store, []int64) {
	t.Helper()
	url := testenv.SQLiteURL(t)
	t.Setenv("DATABASE_URL", url)
	st := testenv.Store(t, url)
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	var ids []int64
	for i, kind := range []string{models.KindCallStart, models.KindCallEnd, models.KindTextMessage} {
		s := ctm.Sample{AccountID: 7, CallID: int64(100 + i), Phone: "+12395550171", Start: at}
		body := s.StartBody()
		sum := sha256.Sum256(body)
		d := &models.Delivery{
			AccountID: 7, Kind: kind, BodySHA256: hex.EncodeToString(sum[:]),
			CTMID: s.CallID, Body: body, ReceivedAt: at.Add(time.Duration(i) * time.Minute),
		}
		_, err := st.SaveDelivery(ctx, d, "", time.Minute)
		require.NoError(t, err)
		ids = append(ids, d.ID)
	}
	refs, err := st.ClaimDue(ctx, "relay-a", time.Minute, 1)
	require.NoError(t, err)
	require.NoError(t, st.MarkDispatched(ctx, refs[0].ID, "relay-a"))
	return st, ids
}

// oldestAge is the one part of `inbox list` that moves with the clock.
var oldestAge = regexp.MustCompile(`oldest pending: \S+`)

func TestInboxList(t *testing.T) {
	inboxFixture(t)

	code, out, errOut := run("inbox", "list")
	require.Equal(t, ExitOK, code, errOut)
	golden(t, "inbox-list.golden", oldestAge.ReplaceAllString(out, "oldest pending: AGE"))
	assert.NotContains(t, out, "2395550171", "bodies and their PHI are never listed")

	code, out, errOut = run("inbox", "list", "--status", "dispatched")
	require.Equal(t, ExitOK, code, errOut)
	assert.Contains(t, out, "call-start")
	assert.NotContains(t, out, "call-end")
}

func TestInboxReplay(t *testing.T) {
	st, ids := inboxFixture(t)

	code, out, errOut := run("inbox", "replay", strconv.FormatInt(ids[0], 10))
	require.Equal(t, ExitOK, code, errOut)
	assert.Contains(t, out, "pending again")
	d, err := st.GetDelivery(context.Background(), ids[0])
	require.NoError(t, err)
	assert.Equal(t, models.DeliveryPending, d.Status)

	code, _, errOut = run("inbox", "replay", "999999")
	assert.Equal(t, ExitFailure, code)
	assert.Contains(t, errOut, "no delivery 999999")
}

func TestInboxCommandErrors(t *testing.T) {
	cases := map[string]struct {
		args []string
		env  string
		code int
		says string
	}{
		"status unknown":     {[]string{"inbox", "list", "--status", "lost"}, "", ExitUsage, "--status"},
		"limit out of range": {[]string{"inbox", "list", "--limit", "0"}, "", ExitUsage, "--limit"},
		"id not a number":    {[]string{"inbox", "replay", "seven"}, "", ExitUsage, "positive integer"},
		"no id":              {[]string{"inbox", "replay"}, "", ExitUsage, "accepts 1 arg"},
		"no database":        {[]string{"inbox", "list"}, "none", ExitConfig, "DATABASE_URL is unset"},
		"database unreachable": {[]string{"inbox", "list"},
			"postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2",
			ExitUnavailable, "opening postgres database"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			switch tc.env {
			case "":
				t.Setenv("DATABASE_URL", testenv.SQLiteURL(t))
			case "none":
				t.Setenv("DATABASE_URL", "")
			default:
				t.Setenv("DATABASE_URL", tc.env)
			}
			code, _, errOut := run(tc.args...)
			assert.Equal(t, tc.code, code, errOut)
			assert.Contains(t, errOut, tc.says)
		})
	}
}

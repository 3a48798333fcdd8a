package ctm

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseToleratesCTMsLooseTypes(t *testing.T) {
	cases := []struct {
		name string
		body string
		want func(t *testing.T, c *Call)
	}{
		{
			name: "ids as numbers",
			body: `{"id": 2201, "account_id": 17, "direction": "inbound"}`,
			want: func(t *testing.T, c *Call) {
				assert.Equal(t, int64(2201), c.ID)
				assert.Equal(t, int64(17), c.AccountID)
			},
		},
		{
			name: "ids as strings",
			body: `{"id": "2201", "account_id": "17"}`,
			want: func(t *testing.T, c *Call) {
				assert.Equal(t, int64(2201), c.ID)
				assert.Equal(t, int64(17), c.AccountID)
			},
		},
		{
			name: "tags as a list",
			body: `{"id": 1, "tag_list": ["insurance", " detox ", ""]}`,
			want: func(t *testing.T, c *Call) { assert.Equal(t, []string{"insurance", "detox"}, c.Tags) },
		},
		{
			name: "tags as one comma-separated string",
			body: `{"id": 1, "tag_list": "insurance, detox"}`,
			want: func(t *testing.T, c *Call) { assert.Equal(t, []string{"insurance", "detox"}, c.Tags) },
		},
		{
			name: "booleans as strings and numbers",
			body: `{"id": 1, "is_new_caller": "true", "sale": {"conversion": 1, "score": "4"}}`,
			want: func(t *testing.T, c *Call) {
				require.NotNil(t, c.IsNewCaller)
				assert.True(t, *c.IsNewCaller)
				require.NotNil(t, c.Sale)
				assert.True(t, *c.Sale.Conversion)
				assert.Equal(t, 4, *c.Sale.Score)
			},
		},
		{
			name: "a star rating outside 1-5 is ignored",
			body: `{"id": 1, "sale": {"score": 9, "value": 120.5}}`,
			want: func(t *testing.T, c *Call) {
				require.NotNil(t, c.Sale)
				assert.Nil(t, c.Sale.Score)
				assert.Equal(t, 120.5, *c.Sale.Value)
			},
		},
		{
			name: "empty sale is no sale",
			body: `{"id": 1, "sale": {}}`,
			want: func(t *testing.T, c *Call) { assert.Nil(t, c.Sale) },
		},
		{
			name: "unknown fields and nulls are ignored",
			body: `{"id": 1, "brand_new_field": {"x": [1,2]}, "name": null, "duration": null}`,
			want: func(t *testing.T, c *Call) {
				assert.Empty(t, c.Name)
				assert.Zero(t, c.Duration)
			},
		},
		{
			name: "caller number falls back to the bare rendering",
			body: `{"id": 1, "caller_number_bare": "2395550171"}`,
			want: func(t *testing.T, c *Call) { assert.Equal(t, "2395550171", c.CallerNumber) },
		},
		{
			name: "agent and custom fields",
			body: `{"id": 1, "agent": {"id": 55, "name": "Dana"}, "custom_fields": {"insurance": "Aetna"}}`,
			want: func(t *testing.T, c *Call) {
				assert.Equal(t, Agent{ID: "55", Name: "Dana"}, c.Agent)
				assert.Equal(t, map[string]any{"insurance": "Aetna"}, c.CustomFields)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.body))
			require.NoError(t, err)
			tc.want(t, c)
		})
	}
}

func TestParseRejects(t *testing.T) {
	cases := map[string]struct {
		body string
		want error
	}{
		"not JSON":                {body: `id=1&name=x`, want: ErrNotJSONObject},
		"a JSON array":            {body: `[{"id": 1}]`, want: ErrNotJSONObject},
		"a JSON string":           {body: `"hello"`, want: ErrNotJSONObject},
		"null":                    {body: `null`, want: ErrNotJSONObject},
		"two objects":             {body: `{"id": 1} {"id": 2}`, want: ErrNotJSONObject},
		"no id":                   {body: `{"account_id": 1}`, want: ErrNoID},
		"id zero":                 {body: `{"id": 0}`, want: ErrNoID},
		"negative id":             {body: `{"id": -5}`, want: ErrNoID},
		"id not a number":         {body: `{"id": "abc"}`, want: ErrNoID},
		"fractional id":           {body: `{"id": 1.5}`, want: ErrNoID},
		"id as an object":         {body: `{"id": {"v": 1}}`, want: ErrNoID},
		"truncated object":        {body: `{"id": 1`, want: ErrNotJSONObject},
		"empty body":              {body: ``, want: ErrNotJSONObject},
		"whitespace-only body":    {body: "  \n", want: ErrNotJSONObject},
		"trailing garbage":        {body: `{"id": 1}x`, want: ErrNotJSONObject},
		"a stray closing brace":   {body: `{"id": 1}}`, want: ErrNotJSONObject},
		"a stray closing bracket": {body: "{\"id\": 1}\n]", want: ErrNotJSONObject},
		"object inside an object": {body: `{"call": {"id": 1}}`, want: ErrNoID},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.body))
			assert.True(t, errors.Is(err, tc.want), "got %v, want %v", err, tc.want)
		})
	}
}

func TestFinished(t *testing.T) {
	cases := map[string]struct {
		call Call
		want bool
	}{
		"ringing start":          {call: Call{DialStatus: "ringing"}, want: false},
		"in progress":            {call: Call{DialStatus: "in-progress"}, want: false},
		"nothing known":          {call: Call{}, want: false},
		"answered":               {call: Call{DialStatus: "answered"}, want: true},
		"missed":                 {call: Call{CallStatus: "no answer"}, want: true},
		"has a duration":         {call: Call{DialStatus: "ringing", Duration: 12}, want: true},
		"status casing is loose": {call: Call{CallStatus: "Busy"}, want: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.call.Finished())
		})
	}
}

func TestSamplesParseAsTheirStage(t *testing.T) {
	s := Sample{AccountID: 3, CallID: 44, Phone: "+12395550171", Start: time.Unix(1_780_000_000, 0)}
	start, err := Parse(s.StartBody())
	require.NoError(t, err)
	assert.False(t, start.Finished())
	assert.Equal(t, int64(1_780_000_000), start.UnixTime)

	end, err := Parse(s.EndBody())
	require.NoError(t, err)
	assert.True(t, end.Finished())
	assert.Equal(t, SampleTranscript, end.TranscriptionText)
	assert.NotEmpty(t, end.Audio)

	update, err := Parse(s.UpdateBody())
	require.NoError(t, err)
	require.NotNil(t, update.Sale)
	assert.Equal(t, 4, *update.Sale.Score)

	text, err := Parse(s.TextBody())
	require.NoError(t, err)
	assert.True(t, text.IsMessage())
	assert.NotEmpty(t, text.MessageBody)
}

func TestCallStringNamesNoCaller(t *testing.T) {
	c := &Call{ID: 9, AccountID: 2, CallerNumber: "+12395550171", Name: "Jordan"}
	assert.Equal(t, "ctm call 9 (account 2)", c.String())
}

package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/engine"
	"github.com/ctmflow/ctmflow/workflows"
)

func TestWriteParked(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	calls := []engine.ParkedCall{
		{WorkflowID: "ctm-call-1-42", State: workflows.State{
			Stage: "ended", LeadID: 17,
			Parked: []workflows.ParkedStep{
				{Step: "attach transcript", Error: "ERROR: transcript column locked (SQLSTATE P0001)",
					Since: now.Add(-42 * time.Minute)},
				{Step: "attach recording", Error: "connection refused", Since: now.Add(-90 * time.Second)},
			},
		}},
		{WorkflowID: "ctm-message-1-7", State: workflows.State{Stage: "received", LeadID: 0,
			Parked: []workflows.ParkedStep{{Step: "record message", Error: "delivery not found",
				Since: now.Add(-3 * time.Hour)}}}},
		{WorkflowID: "ctm-call-1-43", State: workflows.State{Stage: "ended", LeadID: 18}},
		{WorkflowID: "ctm-call-2-44", StateErr: errors.New("context deadline exceeded")},
	}
	cases := map[string][]engine.ParkedCall{
		"ops_list.golden":       calls,
		"ops_list_empty.golden": nil,
	}
	for name, calls := range cases {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, writeParked(&out, calls, now))
			golden := filepath.Join("testdata", name)
			if *update {
				require.NoError(t, os.WriteFile(golden, out.Bytes(), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err)
			assert.Equal(t, string(want), out.String())
		})
	}
}

func TestWorkflowIDOf(t *testing.T) {
	cases := []struct {
		arg, want string
		ok        bool
	}{
		{"ctm-call-1-42", "ctm-call-1-42", true},
		{"ctm-message-12-7", "ctm-message-12-7", true},
		{"1/42", "ctm-call-1-42", true},
		{"1/0", "", false},
		{"-1/42", "", false},
		{"1/42/3", "", false},
		{"ctm-call-1", "", false},
		{"ctm-call-1-42; drop", "", false},
		{"42", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.arg, func(t *testing.T) {
			got, err := workflowIDOf(tc.arg)
			if !tc.ok {
				var ee *exitError
				require.ErrorAs(t, err, &ee)
				assert.Equal(t, ExitUsage, ee.code)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
)

// Park posts about n call starts at rate per second and returns how many
// it sent, once Temporal counts that many more of the account's calls
// running and waiting for their end.
func Park(
	ctx context.Context, t *Target, c client.Client,
	n int, rate float64, firstCallID int64, progress io.Writer,
) (int64, error) {
	query := fmt.Sprintf("CtmAccountId = %d AND CtmCallStage = 'started' AND ExecutionStatus = 'Running'", t.AccountID)
	count := func() (int64, error) {
		resp, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: query})
		if err != nil {
			return 0, fmt.Errorf("counting waiting calls: %w", err)
		}
		return resp.Count, nil
	}
	base, err := count()
	if err != nil {
		return 0, err
	}

	rep := Acks(ctx, t, AckOptions{
		Rate:        rate,
		Duration:    time.Duration(float64(n)/rate*float64(time.Second)) + time.Millisecond,
		Progress:    progress,
		FirstCallID: firstCallID,
	})
	if rep.Errors > 0 {
		return 0, fmt.Errorf("%d of %d starts failed: %v", rep.Errors, rep.Sent, rep.FirstErrors)
	}
	for {
		got, err := count()
		if err != nil {
			return 0, err
		}
		if progress != nil {
			fmt.Fprintf(progress, "\r  waiting calls %d of %d   ", got-base, rep.Sent)
		}
		if got-base >= rep.Sent {
			if progress != nil {
				fmt.Fprintln(progress)
			}
			return rep.Sent, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// Memory is a process's resident memory, from /proc.
type Memory struct {
	// RSS is resident memory now; Peak the high-water mark.
	RSS  int64 `json:"rss_bytes"`
	Peak int64 `json:"peak_rss_bytes"`
}

// ProcessMemory reads a process's resident set from /proc/PID/status.
func ProcessMemory(pid int) (Memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("reading process memory: %w", err)
	}
	defer f.Close()
	var m Memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(val)
		if len(fields) == 0 {
			continue
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		switch key {
		case "VmRSS":
			m.RSS = kb * 1024
		case "VmHWM":
			m.Peak = kb * 1024
		}
	}
	return m, sc.Err()
}

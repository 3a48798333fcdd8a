package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/ctmflow/ctmflow/api"
	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/engine"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/teststack"
	"github.com/ctmflow/ctmflow/workflows"
)

// devProcess is a running `ctmflow dev`.
type devProcess struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startDev(t *testing.T, bin, dataDir string, httpPort, temporalPort int) *devProcess {
	t.Helper()
	cmd := exec.Command(bin, "dev",
		"--data-dir", dataDir,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--temporal-port", strconv.Itoa(temporalPort),
		"--ui-port", "0")
	var env []string
	for _, kv := range os.Environ() {
		// The dev command must find its own defaults, not the test's.
		if !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "API_TOKEN=") &&
			!strings.HasPrefix(kv, "CTM_WEBHOOK_SECRETS=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	p := &devProcess{cmd: cmd, stdout: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout = p.stdout
	cmd.Stderr = p.stdout
	require.NoError(t, cmd.Start())
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})

	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", httpPort)
	teststack.Eventually(t, 2*time.Minute, "ctmflow dev answering", func() bool {
		select {
		case err := <-p.done:
			t.Fatalf("ctmflow dev exited: %v\n%s", err, p.stdout.String())
		default:
		}
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// stop sends SIGTERM and expects a clean exit.
func (p *devProcess) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		require.NoError(t, err, "ctmflow dev exits cleanly on SIGTERM\n%s", p.stdout.String())
	case <-time.After(time.Minute):
		t.Fatalf("ctmflow dev did not stop on SIGTERM\n%s", p.stdout.String())
	}
}

// TestDevRestartKeepsWaitingCalls starts the real `ctmflow dev`, sends a
// call start, stops the process and starts it again: the call's workflow
// is still waiting, and the end sent after the restart completes it in
// the same run.
func TestDevRestartKeepsWaitingCalls(t *testing.T) {
	bin := teststack.Binary(t)
	dataDir := t.TempDir()
	httpPort, temporalPort := freePort(t), freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)

	dev := startDev(t, bin, dataDir, httpPort, temporalPort)
	var creds struct {
		APIToken      string `json:"api_token"`
		AccountID     int64  `json:"account_id"`
		WebhookSecret string `json:"webhook_secret"`
	}
	raw, err := os.ReadFile(filepath.Join(dataDir, "dev-credentials.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &creds))
	teststack.Eventually(t, 10*time.Second, "the banner", func() bool {
		return strings.Contains(dev.stdout.String(), "ctmflow dev is running")
	})
	banner := dev.stdout.String()
	assert.Contains(t, banner, creds.APIToken, "the banner prints the API token")
	assert.Contains(t, banner, creds.WebhookSecret, "the banner prints the CTM secret")
	assert.Contains(t, banner, base+"/webhooks/ctm/")

	phone := "+12395550199"
	sample := ctm.Sample{AccountID: creds.AccountID, CallID: 9001, Phone: phone}
	postDev(t, base, "call-start", creds.WebhookSecret, sample.StartBody())
	waitDevCall(t, base, creds.APIToken, phone, models.StageStarted)
	dev.stop(t)

	dev = startDev(t, bin, dataDir, httpPort, temporalPort)
	postDev(t, base, "call-end", creds.WebhookSecret, sample.EndBody())
	waitDevCall(t, base, creds.APIToken, phone, models.StageEnded)

	c, err := engine.Dial(context.Background(), engine.Options{HostPort: fmt.Sprintf("127.0.0.1:%d", temporalPort)})
	require.NoError(t, err)
	defer c.Close()
	query := fmt.Sprintf("WorkflowId = '%s'", workflows.CallWorkflowID(creds.AccountID, 9001))
	var resp *workflowservice.ListWorkflowExecutionsResponse
	teststack.Eventually(t, 60*time.Second, "the call's workflow completed", func() bool {
		resp, err = c.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: "default", Query: query,
		})
		return err == nil && len(resp.Executions) == 1 &&
			resp.Executions[0].Status == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	})
	require.Len(t, resp.Executions, 1, "the run that waited across the restart took the end")
	dev.stop(t)
}

func postDev(t *testing.T, base, path, secret string, body []byte) {
	t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, err := http.NewRequest(http.MethodPost, base+"/webhooks/ctm/"+path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(ctm.HeaderTime, ts)
	req.Header.Set(ctm.HeaderSignature, ctm.Sign(secret, ts, body))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
}

func waitDevCall(t *testing.T, base, token, phone, stage string) {
	t.Helper()
	teststack.Eventually(t, 30*time.Second, "call "+stage, func() bool {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/leads?phone="+strings.ReplaceAll(phone, "+", "%2B"), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var out api.LeadList
		if json.NewDecoder(resp.Body).Decode(&out) != nil || len(out.Leads) != 1 || len(out.Leads[0].Calls) != 1 {
			return false
		}
		return out.Leads[0].Calls[0].Stage == stage
	})
}

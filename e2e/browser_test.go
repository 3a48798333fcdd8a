package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/ctmflow/ctmflow/engine"
	"github.com/ctmflow/ctmflow/teststack"
	"github.com/ctmflow/ctmflow/workflows"
)

// artifactsDir keeps what the browser saw, for people to look at after
// a run (gitignored).
var artifactsDir = filepath.Join("..", ".artifacts")

// TestWebUIShowsTheCall is the newcomer's first minutes, checked in a real
// browser: `ctmflow dev` starts, `ctmflow send` posts a call, and the
// Temporal Web UI lists the call's workflow and shows its summary and
// current details. Screenshots go to .artifacts/.
func TestWebUIShowsTheCall(t *testing.T) {
	chromium := findChromium(t)
	bin := teststack.Binary(t)
	ports := freePorts(t, 3)
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	uiURL := "http://127.0.0.1:" + strconv.Itoa(ports[2])
	dataDir := t.TempDir()
	startDevWithUI(t, bin, "--data-dir", dataDir, "--http-addr", httpAddr,
		"--temporal-port", strconv.Itoa(ports[1]), "--ui-port", strconv.Itoa(ports[2]))

	const callID = 4242
	send := exec.Command(bin, "send", "call", "--data-dir", dataDir, "--url", "http://"+httpAddr,
		"--ui", uiURL, "--call-id", strconv.Itoa(callID), "--gap", "100ms")
	send.Env = devEnv()
	out, err := send.CombinedOutput()
	require.NoError(t, err, "ctmflow send: %s", out)
	wfID := workflows.CallWorkflowID(1, callID)
	require.Contains(t, string(out), uiURL+"/namespaces/default/workflows/"+wfID)

	waitDevCallDone(t, "127.0.0.1:"+strconv.Itoa(ports[1]), wfID)

	require.NoError(t, os.MkdirAll(artifactsDir, 0o755))
	ctx := browser(t, chromium)

	link := fmt.Sprintf(`//a[normalize-space()=%q]`, wfID)
	err = chromedp.Do(ctx,
		chromedp.Navigate(uiURL+"/namespaces/default/workflows"),
		chromedp.WaitVisible(link),
		screenshot("webui-workflows.png"),
	)
	require.NoError(t, err, "the workflow list")
	listed, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	require.NoError(t, err)
	assert.Contains(t, listed, "CallWorkflow")

	// The workflow's page keeps the summary, the static details and the
	// current details in its User Metadata tab, each rendered from
	// markdown in a frame of its own.
	err = chromedp.Do(ctx,
		chromedp.Click(link),
		chromedp.Click(`//a[contains(@href, "/user-metadata")]`),
	)
	require.NoError(t, err, "the call's user metadata")
	summary := frameText(t, ctx, "user-metadata-summary", "CTM call")
	details := frameText(t, ctx, "user-metadata-details", "ops")
	current := frameText(t, ctx, "user-metadata-current-details", "Stage")
	_, err = chromedp.Run(ctx, screenshot("webui-call.png"))
	require.NoError(t, err)

	// The event history tells the story with the steps' summaries.
	err = chromedp.Do(ctx,
		chromedp.Click(`//a[contains(@href, "/history")]`),
		chromedp.WaitVisible(`//*[contains(text(), "attach transcript and summary (delivery")]`),
		chromedp.WaitVisible(`//*[contains(text(), "wait for the call end")]`),
		screenshot("webui-history.png"),
	)
	require.NoError(t, err, "the call's event history")

	assert.Equal(t, engine.CallSummary(1, callID, "call-start"), summary)
	assert.Contains(t, details, `{"Action": "retry"}`, "the ops signal is described where ops send it")
	assert.Contains(t, current, "Stage ended · lead 1 · 2 deliveries")
	t.Logf("screenshots in %s", artifactsDir)
}

// frameText waits until the markdown frame with the given id shows text
// containing want, and returns that text.
func frameText(t *testing.T, ctx context.Context, id, want string) string {
	t.Helper()
	js := fmt.Sprintf(`(() => {
		const f = document.getElementById(%q);
		const text = f && f.contentDocument && f.contentDocument.body ? f.contentDocument.body.innerText : "";
		return text.includes(%q) ? text.trim() : "";
	})()`, id, want)
	text, err := chromedp.Run(ctx, chromedp.Poll[string](js,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
	require.NoError(t, err, "frame %s showing %q", id, want)
	return text
}

// waitDevCallDone waits until the dev server's Temporal reports the
// call's workflow completed, so the browser sees its final state.
func waitDevCallDone(t *testing.T, hostPort, wfID string) {
	t.Helper()
	c, err := engine.Dial(context.Background(), engine.Options{HostPort: hostPort})
	require.NoError(t, err)
	defer c.Close()
	teststack.Eventually(t, 30*time.Second, wfID+" completed", func() bool {
		d, err := c.DescribeWorkflowExecution(context.Background(), wfID, "")
		return err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	})
}

// findChromium returns Chromium's path. Without it the test fails under
// CI, which installs it, and is skipped elsewhere.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not found under CI (.ci/run installs it; CHROMIUM names another)")
	}
	t.Skip("chromium not found, skipping the browser check (apt-get install chromium; CI fails here instead)")
	return ""
}

// browser starts a headless Chromium for the test, with a profile of its
// own and nothing that phones home.
func browser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1500),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelBrowser := chromedp.NewContext(ctx)
	t.Cleanup(cancelBrowser)
	return ctx
}

func screenshot(name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		png, err := chromedp.FullScreenshot(100)(ctx, t)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(artifactsDir, name), png, 0o644)
	})
}

// startDevWithUI runs `ctmflow dev` with args until the test ends, and
// returns once it printed its banner, which it does when the Web UI
// answers.
func startDevWithUI(t *testing.T, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"dev"}, args...)...)
	cmd.Env = devEnv()
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("ctmflow dev stderr:\n%s", stderr.String())
		}
	})

	ready := make(chan struct{})
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			if strings.Contains(scanner.Text(), "ctmflow dev is running") {
				close(ready)
				break
			}
		}
		for scanner.Scan() {
		}
	}()
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("ctmflow dev exited: %v\n%s", err, stderr.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("ctmflow dev did not start\n%s", stderr.String())
	}
}

// devEnv is a clean environment for ctmflow processes: the test's own
// settings (a DATABASE_URL, say) must not leak into them.
func devEnv() []string {
	var env []string
	for _, key := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(key); ok {
			env = append(env, key+"="+v)
		}
	}
	return env
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

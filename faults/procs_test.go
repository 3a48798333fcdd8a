package faults

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proc is a child process a test starts, kills and starts again. Its
// output goes to a log file, shown when the test fails.
type proc struct {
	t    testing.TB
	name string
	path string
	args []string
	env  []string
	log  string

	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// startProc starts path with args and exactly env (plus PATH and HOME).
func startProc(t testing.TB, name string, env map[string]string, path string, args ...string) *proc {
	t.Helper()
	p := &proc{
		t:    t,
		name: name,
		path: path,
		args: args,
		env:  []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")},
		log:  filepath.Join(t.TempDir(), name+".log"),
	}
	for k, v := range env {
		p.env = append(p.env, k+"="+v)
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			p.dumpLog()
		}
	})
	p.start()
	return p
}

func (p *proc) start() {
	p.t.Helper()
	out, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(out, "---- %s starting at %s\n", p.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		p.t.Fatalf("starting %s: %v", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(out, "---- %s exited at %s: %v\n", p.name, time.Now().Format(time.RFC3339Nano), err)
		_ = out.Close()
		p.waitErr = err
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
}

func (p *proc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill ends the process with SIGKILL: no shutdown, no cleanup.
func (p *proc) kill() {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// signal sends sig, e.g. SIGSTOP to freeze the process and SIGCONT to
// let it go on.
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signalling %s: %v", p.name, err)
	}
}

// stop ends the process with SIGTERM, as an orchestrator does, and waits
// for its graceful shutdown.
func (p *proc) stop() {
	p.t.Helper()
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.kill()
		p.t.Errorf("%s did not stop within 30s of SIGTERM", p.name)
	}
}

// waitLog waits until the process has written want to its log.
func (p *proc) waitLog(want string, timeout time.Duration) {
	p.t.Helper()
	waitFor(p.t, timeout, p.name+" to log "+strconv.Quote(want), func() bool {
		if !p.running() {
			p.t.Fatalf("%s exited early: %v", p.name, p.waitErr)
		}
		b, _ := os.ReadFile(p.log)
		return bytes.Contains(b, []byte(want))
	})
}

func (p *proc) dumpLog() {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	p.t.Logf("last lines of %s's log:\n%s", p.name, strings.Join(lines, "\n"))
}

// waitHealthy waits until base answers /healthz.
func waitHealthy(t testing.TB, base string, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	waitFor(t, timeout, base+" healthy", func() bool {
		resp, err := client.Get(base + "/healthz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// waitFor polls cond every 50 ms until it holds, failing the test after
// timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a port nothing listens on now. A test keeps it across
// restarts of the process that binds it.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// temporalHelper is a Temporal server in its own process, whose state
// survives a stop in a file of the test's temp dir.
type temporalHelper struct {
	*proc
	addr string
}

func startTemporal(t testing.TB) *temporalHelper {
	t.Helper()
	port := freePort(t)
	dir := t.TempDir()
	p := startProc(t, "temporal", map[string]string{
		envTemporalPort: strconv.Itoa(port),
		envTemporalDB:   filepath.Join(dir, "temporal.db"),
	}, os.Args[0], "-test.run=^$")
	h := &temporalHelper{proc: p, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	h.waitReady()
	return h
}

func (h *temporalHelper) waitReady() {
	h.t.Helper()
	// Each start appends to the log; count the ready lines.
	b, _ := os.ReadFile(h.log)
	before := bytes.Count(b, []byte(temporalReady))
	waitFor(h.t, 90*time.Second, "temporal ready", func() bool {
		if !h.running() {
			h.t.Fatalf("temporal helper exited early: %v", h.waitErr)
		}
		b, _ := os.ReadFile(h.log)
		return bytes.Count(b, []byte(temporalReady)) > before
	})
}

func (h *temporalHelper) restart() {
	h.t.Helper()
	h.start()
	h.waitReady()
}

// ctmflowEnv is the environment of a ctmflow process of a test.
func ctmflowEnv(s *setup, extra map[string]string) map[string]string {
	env := map[string]string{
		"DATABASE_URL":        s.dbURL,
		"TEMPORAL_ADDRESS":    s.temporal,
		"TEMPORAL_NAMESPACE":  "default",
		"TEMPORAL_TASK_QUEUE": s.taskQueue,
		"CTM_WEBHOOK_SECRETS": strconv.FormatInt(s.account, 10) + "=" + s.secret,
		"API_TOKEN":           s.token,
		"HTTP_ADDR":           s.httpAddr,
		"LOG_FORMAT":          "json",
		"LOG_LEVEL":           "info",
		"SHUTDOWN_TIMEOUT":    "5s",
		"INBOX_LEASE":         "6s",
		"DATABASE_MAX_CONNS":  "10",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

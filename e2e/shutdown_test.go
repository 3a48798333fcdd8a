package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/testenv"
	"github.com/ctmflow/ctmflow/teststack"
)

// process is a ctmflow subprocess whose JSON log lines the test reads.
type process struct {
	name string
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	err  error
}

func startProcess(t *testing.T, bin string, env []string, args ...string) *process {
	t.Helper()
	p := &process{name: args[0], cmd: exec.Command(bin, args...), logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s logs:\n%s", p.name, p.logs.String())
		}
	})
	return p
}

// logLine waits for a log line with msg and returns it decoded.
func (p *process) logLine(t *testing.T, msg string) map[string]any {
	t.Helper()
	var found map[string]any
	teststack.Eventually(t, 30*time.Second, p.name+" logging "+msg, func() bool {
		sc := bufio.NewScanner(strings.NewReader(p.logs.String()))
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
				found = line
				return true
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited: %v\n%s", p.name, p.err, p.logs.String())
		default:
		}
		return false
	})
	return found
}

// stop sends SIGTERM and waits for the process to exit, returning its
// exit code.
func (p *process) stop(t *testing.T, within time.Duration) int {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("%s still running %s after SIGTERM", p.name, within)
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return exit.ExitCode()
	}
	require.NoError(t, p.err)
	return 0
}

// ack is a delivery the webhook acknowledged: CTM would not send it again.
type ack struct {
	deliveryID int64
	callID     int64
	kind       string
}

// loader posts calls (a start, then its end) from a few goroutines, the
// way CTM would under steady traffic, to whichever webhook process is
// current. A post that fails is retried, as CTM retries; only 2xx answers
// count as acknowledged.
type loader struct {
	account int64
	secret  string
	base    atomic.Pointer[string]
	client  *http.Client
	nextID  atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup

	mu     sync.Mutex
	acks   []ack
	failed int
}

func (l *loader) run(workers int) {
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				id := l.nextID.Add(1)
				// Numbers of fiction (555-01xx), in CTM's formats.
				s := ctm.Sample{AccountID: l.account, CallID: id, Phone: fmt.Sprintf("+1239555%04d", 100+id%100)}
				if !l.post(id, models.KindCallStart, s.StartBody()) {
					return
				}
				if !l.post(id, models.KindCallEnd, s.EndBody()) {
					return
				}
			}
		}()
	}
}

// post sends one delivery until it is acknowledged or the load stops.
func (l *loader) post(callID int64, kind string, body []byte) bool {
	for {
		select {
		case <-l.stop:
			return false
		default:
		}
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req, _ := http.NewRequest(http.MethodPost, *l.base.Load()+"/webhooks/ctm/"+kind, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(ctm.HeaderTime, ts)
		req.Header.Set(ctm.HeaderSignature, ctm.Sign(l.secret, ts, body))
		resp, err := l.client.Do(req)
		if err == nil {
			var out struct {
				DeliveryID int64 `json:"delivery_id"`
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 == 2 && json.Unmarshal(b, &out) == nil && out.DeliveryID > 0 {
				l.mu.Lock()
				l.acks = append(l.acks, ack{deliveryID: out.DeliveryID, callID: callID, kind: kind})
				l.mu.Unlock()
				return true
			}
		}
		l.mu.Lock()
		l.failed++
		l.mu.Unlock()
		time.Sleep(50 * time.Millisecond) // CTM's retry, compressed
	}
}

func (l *loader) acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

// waitAcks waits until n more deliveries have been acknowledged.
func (l *loader) waitAcks(t *testing.T, n int, what string) {
	t.Helper()
	target := l.acked() + n
	teststack.Eventually(t, 60*time.Second, what, func() bool { return l.acked() >= target })
}

// SIGTERM under load, to the webhook and then to the worker: each stops
// cleanly (exit 0), and every delivery that was acknowledged reaches its
// workflow and the CRM — nothing acknowledged is lost.
func TestSIGTERMUnderLoadLosesNothing(t *testing.T) {
	bin := teststack.Binary(t)
	temporal := teststack.Temporal(t)
	dbURL := testenv.PostgresURL(t)

	account := 5000 + time.Now().UnixNano()%1_000_000
	secret := "shutdown_secret_" + strconv.FormatInt(account, 36)
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"DATABASE_URL=" + dbURL,
		"TEMPORAL_ADDRESS=" + temporal.HostPort(),
		"TEMPORAL_NAMESPACE=" + temporal.Namespace(),
		"TEMPORAL_TASK_QUEUE=ctmflow-shutdown-" + strconv.FormatInt(account, 36),
		"CTM_WEBHOOK_SECRETS=" + strconv.FormatInt(account, 10) + "=" + secret,
		"API_TOKEN=shutdown_token_0123456789",
		"HTTP_ADDR=127.0.0.1:0",
		"METRICS_ADDR=127.0.0.1:0",
		"SHUTDOWN_TIMEOUT=10s",
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
	}

	migrate := startProcess(t, bin, env, "migrate")
	<-migrate.done
	require.NoError(t, migrate.err, migrate.logs.String())

	worker := startProcess(t, bin, env, "worker")
	worker.logLine(t, "worker metrics listening")
	webhook := startProcess(t, bin, env, "webhook")
	base := "http://" + webhook.logLine(t, "webhook receiver listening")["addr"].(string)

	l := &loader{
		account: account, secret: secret, stop: make(chan struct{}),
		client: &http.Client{Timeout: 15 * time.Second},
	}
	l.base.Store(&base)
	l.run(4)
	stopLoad := sync.OnceFunc(func() {
		close(l.stop)
		l.wg.Wait()
	})
	defer stopLoad()
	all := []*process{migrate, worker, webhook}
	l.waitAcks(t, 40, "load on the first webhook")

	t.Run("webhook stops cleanly under load", func(t *testing.T) {
		assert.Equal(t, 0, webhook.stop(t, 20*time.Second))
		webhook.logLine(t, "webhook receiver stopped")
	})

	webhook = startProcess(t, bin, env, "webhook")
	all = append(all, webhook)
	base = "http://" + webhook.logLine(t, "webhook receiver listening")["addr"].(string)
	l.base.Store(&base)
	l.waitAcks(t, 40, "load on the second webhook")

	t.Run("worker stops cleanly under load", func(t *testing.T) {
		assert.Equal(t, 0, worker.stop(t, 20*time.Second))
		worker.logLine(t, "worker stopped")
	})
	l.waitAcks(t, 20, "deliveries stored while no worker runs")
	worker = startProcess(t, bin, env, "worker")
	all = append(all, worker)
	worker.logLine(t, "worker metrics listening")
	l.waitAcks(t, 20, "load with the new worker")
	stopLoad()

	st := testenv.Store(t, dbURL)
	t.Logf("acknowledged %d deliveries; %d posts failed or were refused and retried", len(l.acks), l.failed)

	t.Run("every acknowledged delivery reached the CRM", func(t *testing.T) {
		ended := map[int64]bool{}
		for _, a := range l.acks {
			if a.kind == models.KindCallEnd {
				ended[a.callID] = true
			}
		}
		teststack.Eventually(t, 90*time.Second, "every acknowledged delivery processed", func() bool {
			for _, a := range l.acks {
				d, err := st.GetDelivery(t.Context(), a.deliveryID)
				if err != nil || d.ProcessedAt == nil {
					return false
				}
			}
			return true
		})
		teststack.Eventually(t, 90*time.Second, "every acknowledged end applied", func() bool {
			for id := range ended {
				c, err := st.GetCall(t.Context(), account, id)
				if err != nil || c.Stage != models.StageEnded {
					return false
				}
			}
			return true
		})
	})

	t.Run("no phone number in any process's output", func(t *testing.T) {
		// Every number the load used is +1 239 555-01xx.
		for _, p := range all {
			digits := strings.NewReplacer(" ", "", "-", "", ".", "", "(", "", ")", "").Replace(p.logs.String())
			assert.NotRegexp(t, `2395550\d\d`, digits, p.name)
		}
	})
}

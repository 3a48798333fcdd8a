// Package faults breaks real ctmflow processes on purpose, under a steady
// load of signed webhooks, and checks the promise made to CTM: once a
// delivery is answered 2xx it is stored, and it reaches its workflow, with
// no second effect however often it arrives.
//
// Nothing here is mocked. The processes are the ctmflow binary
// (teststack.Binary), Temporal is the embedded server — in a process of
// its own where a test stops it — and the databases are real: the
// machine's Postgres, and a private Postgres cluster for the test that
// restarts one. Every test bounds its own time.
package faults

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ctmflow/ctmflow/devserver"
	"github.com/ctmflow/ctmflow/engine"
)

// Environment of the Temporal helper process: the test binary re-runs
// itself as a Temporal server that a test can stop and start again on the
// same port, with its state in a file.
const (
	envTemporalPort = "CTMFLOW_FAULTS_TEMPORAL_PORT"
	envTemporalDB   = "CTMFLOW_FAULTS_TEMPORAL_DB"
	temporalReady   = "temporal helper ready"
)

func TestMain(m *testing.M) {
	if os.Getenv(envTemporalPort) != "" {
		os.Exit(serveTemporal())
	}
	os.Exit(m.Run())
}

// serveTemporal runs the embedded Temporal server until SIGTERM.
func serveTemporal() int {
	port, err := strconv.Atoi(os.Getenv(envTemporalPort))
	if err != nil {
		fmt.Fprintln(os.Stderr, "temporal helper: bad port:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	db := os.Getenv(envTemporalDB)
	srv, err := devserver.Start(ctx, devserver.Options{
		DBPath:  db,
		Port:    port,
		LogPath: filepath.Join(filepath.Dir(db), "temporal-server.log"),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "temporal helper:", err)
		return 1
	}
	defer srv.Stop()

	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := engine.Dial(sctx, engine.Options{HostPort: srv.HostPort()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "temporal helper:", err)
		return 1
	}
	err = engine.EnsureSearchAttributes(sctx, c, srv.Namespace())
	c.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "temporal helper:", err)
		return 1
	}

	fmt.Println(temporalReady)
	<-ctx.Done()
	return 0
}

// Package devserver runs a complete Temporal server, and optionally its Web
// UI, inside the current process: the engine behind `ctmflow dev` and the
// integration tests. State lives in one SQLite file (or in memory), so a
// restarted dev process finds every waiting call where it left it.
//
// Only the dev command and tests import this package. The production
// processes talk to an external Temporal cluster and must not link the
// server: it doubles the binary and its attack surface.
package devserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
)

// Options configure the embedded server.
type Options struct {
	// DBPath is the SQLite file holding the server's state, created with
	// its schema on first start; visibility goes to VisibilityPath(DBPath)
	// beside it. Empty keeps state in memory (tests).
	DBPath string
	// Namespace is created on start when missing. Default "default".
	Namespace string
	// IP the server and UI listen on. Default 127.0.0.1.
	IP string
	// Port of the frontend gRPC service. 0 picks a free port.
	Port int
	// UIPort of the Web UI. 0 runs no UI.
	UIPort int
	// Shards is the number of history shards, fixed when the database is
	// created. Default 4: one shard serialises every workflow update (about
	// 50 ms a hop measured here), four cut that to 15–20 ms.
	Shards int
	// LogPath receives the server's own log (warnings and up). Empty
	// discards it.
	LogPath string
}

// Server is a running embedded Temporal server.
type Server struct {
	server    temporal.Server
	ui        *uiserver.Server
	hostPort  string
	uiURL     string
	namespace string
	logCloser func()
}

// Start creates the database when needed and starts the server, and the UI
// when UIPort is set. It returns once the frontend accepts connections.
func Start(ctx context.Context, opts Options) (*Server, error) {
	opts = withDefaults(opts)
	// Three internal gRPC ports and four membership ports, and the
	// frontend's when none was asked for.
	need := 2*len(temporal.DefaultServices) - 1
	if opts.Port == 0 {
		need++
	}
	ports, err := freePorts(opts.IP, need)
	if err != nil {
		return nil, err
	}
	if opts.Port == 0 {
		opts.Port, ports = ports[0], ports[1:]
	}
	if err := checkFree(opts.IP, opts.Port, "temporal port"); err != nil {
		return nil, err
	}
	if opts.UIPort != 0 {
		if err := checkFree(opts.IP, opts.UIPort, "ui port"); err != nil {
			return nil, err
		}
	}

	mainDB, visibilityDB, err := prepareDatabases(opts)
	if err != nil {
		return nil, err
	}
	cfg := serverConfig(opts, mainDB, visibilityDB, ports)

	logger, closeLog, err := serverLogger(opts.LogPath)
	if err != nil {
		return nil, err
	}
	srv, err := temporal.NewServer(
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithLogger(logger),
		temporal.WithDynamicConfigClient(dynamicConfig()),
	)
	if err != nil {
		closeLog()
		return nil, fmt.Errorf("creating temporal server: %w", err)
	}
	if err := srv.Start(); err != nil {
		closeLog()
		return nil, fmt.Errorf("starting temporal server: %w", err)
	}

	s := &Server{
		server:    srv,
		hostPort:  net.JoinHostPort(opts.IP, strconv.Itoa(opts.Port)),
		namespace: opts.Namespace,
		logCloser: closeLog,
	}
	if err := waitListening(ctx, s.hostPort); err != nil {
		_ = s.Stop()
		return nil, err
	}
	if opts.UIPort != 0 {
		s.startUI(opts)
	}
	return s, nil
}

func withDefaults(opts Options) Options {
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.IP == "" {
		opts.IP = "127.0.0.1"
	}
	if opts.Shards <= 0 {
		opts.Shards = 4
	}
	return opts
}

// VisibilityPath is the file holding the visibility store of a server
// whose state is in dbPath: temporal.db → temporal-visibility.db.
func VisibilityPath(dbPath string) string {
	ext := filepath.Ext(dbPath)
	return strings.TrimSuffix(dbPath, ext) + "-visibility" + ext
}

// visibilityFile is the file to hold the visibility store of the server
// whose state is in dbPath: VisibilityPath(dbPath), except for a data
// directory made before visibility had its own file, which keeps it in
// the main one so that its workflows stay listed in the Web UI.
func visibilityFile(dbPath string) string {
	_, mainErr := os.Stat(dbPath)
	_, visErr := os.Stat(VisibilityPath(dbPath))
	if mainErr == nil && errors.Is(visErr, os.ErrNotExist) {
		return dbPath
	}
	return VisibilityPath(dbPath)
}

// prepareDatabases creates the SQLite schemas on first use and registers
// the namespace, before the server starts, as the server expects.
//
// Visibility lives in a database of its own. The SQLite plugin gives each
// database a single connection, so with one database every visibility
// write (the list the Web UI shows, search attributes) queued behind the
// history writes that workflows wait on; CPU profiles on two cores put
// 8–19 % of all the work, depending on load, in visibility writes.
// Apart, saturation throughput rose by about a tenth, within run-to-run
// noise (BENCHMARKS.md).
func prepareDatabases(opts Options) (main, visibility *config.SQL, err error) {
	if opts.DBPath == "" {
		name := "temporal-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		main, visibility = memoryDB(name), memoryDB(name+"-visibility")
	} else {
		visPath := visibilityFile(opts.DBPath)
		if main, err = fileDB(opts.DBPath); err != nil {
			return nil, nil, err
		}
		visibility = main
		if visPath != opts.DBPath {
			if visibility, err = fileDB(visPath); err != nil {
				return nil, nil, err
			}
		}
		if err := forgetMembers(opts.DBPath); err != nil {
			return nil, nil, err
		}
	}

	ns, err := sqliteschema.NewNamespaceConfig("active", opts.Namespace, false, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("describing namespace: %w", err)
	}
	if err := sqliteschema.CreateNamespaces(main, ns); err != nil {
		return nil, nil, fmt.Errorf("creating namespace: %w", err)
	}
	return main, visibility, nil
}

// memoryDB is a private shared-cache memory database: every connection of
// this server sees it, no other server in the process does. The SQLite
// plugin creates the schema of a memory database itself.
func memoryDB(name string) *config.SQL {
	return &config.SQL{
		PluginName:        sqliteplugin.PluginName,
		ConnectAttributes: map[string]string{"mode": "memory", "cache": "shared"},
		DatabaseName:      name,
	}
}

// fileDB is a database in a file, given its schema when new.
func fileDB(path string) (*config.SQL, error) {
	cfg := &config.SQL{
		PluginName: sqliteplugin.PluginName,
		// WAL with synchronous=NORMAL syncs at checkpoints rather than at
		// every commit: it survives a crash of the process, which is what
		// a dev server needs, at a fraction of the latency.
		ConnectAttributes: map[string]string{"mode": "rwc", "journal_mode": "wal", "synchronous": "NORMAL"},
		DatabaseName:      path,
	}
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return cfg, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("reading temporal database: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	if err := sqliteschema.SetupSchema(cfg); err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("creating temporal schema: %w", err)
	}
	return cfg, nil
}

// serverConfig lays out a single-node server; ports are the free ports
// for its internal services.
func serverConfig(opts Options, mainDB, visibilityDB *config.SQL, ports []int) *config.Config {
	services := map[string]config.Service{}
	for _, name := range temporal.DefaultServices {
		port := opts.Port
		if name != "frontend" {
			port, ports = ports[0], ports[1:]
		}
		member := ports[0]
		ports = ports[1:]
		services[name] = config.Service{RPC: config.RPC{
			GRPCPort:       port,
			MembershipPort: member,
			BindOnIP:       opts.IP,
		}}
	}

	frontend := net.JoinHostPort(opts.IP, strconv.Itoa(opts.Port))
	return &config.Config{
		Global: config.Global{
			Membership: config.Membership{
				MaxJoinDuration:  30 * time.Second,
				BroadcastAddress: opts.IP,
			},
		},
		Persistence: config.Persistence{
			DefaultStore:     "sqlite",
			VisibilityStore:  "sqlite-visibility",
			NumHistoryShards: int32(opts.Shards),
			DataStores: map[string]config.DataStore{
				"sqlite":            {SQL: mainDB},
				"sqlite-visibility": {SQL: visibilityDB},
			},
		},
		ClusterMetadata: &cluster.Config{
			EnableGlobalNamespace:    false,
			FailoverVersionIncrement: 10,
			MasterClusterName:        "active",
			CurrentClusterName:       "active",
			ClusterInformation: map[string]cluster.ClusterInformation{
				"active": {
					Enabled:                true,
					InitialFailoverVersion: 1,
					RPCAddress:             frontend,
				},
			},
		},
		DCRedirectionPolicy: config.DCRedirectionPolicy{Policy: "noop"},
		Services:            services,
		Archival: config.Archival{
			History:    config.HistoryArchival{State: "disabled"},
			Visibility: config.VisibilityArchival{State: "disabled"},
		},
		NamespaceDefaults: config.NamespaceDefaults{
			Archival: config.ArchivalNamespaceDefaults{
				History:    config.HistoryArchivalNamespaceDefaults{State: "disabled"},
				Visibility: config.VisibilityArchivalNamespaceDefaults{State: "disabled"},
			},
		},
		PublicClient: config.PublicClient{HostPort: frontend},
	}
}

// dynamicConfig tunes the single-node server for latency: one task queue
// partition, so that a poll and the task it waits for always meet, and
// search attributes usable the moment they are registered.
func dynamicConfig() dynamicconfig.StaticClient {
	one := []dynamicconfig.ConstrainedValue{{Value: 1}}
	yes := []dynamicconfig.ConstrainedValue{{Value: true}}
	return dynamicconfig.StaticClient{
		dynamicconfig.MatchingNumTaskqueueReadPartitions.Key():      one,
		dynamicconfig.MatchingNumTaskqueueWritePartitions.Key():     one,
		dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): yes,
	}
}

// forgetMembers clears the cluster membership a previous run left in the
// database. Its services listened on other ports; ringpop would try to
// join those dead addresses first and leave the restarted server unable to
// route tasks until the old records expire. A dev server is the only
// member of its cluster, so the old records are never right.
func forgetMembers(path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return fmt.Errorf("opening temporal database: %w", err)
	}
	defer db.Close()
	if _, err := db.Exec("DELETE FROM cluster_membership"); err != nil {
		return fmt.Errorf("clearing stale cluster membership: %w", err)
	}
	return nil
}

func serverLogger(path string) (log.Logger, func(), error) {
	if path == "" {
		return log.NewNoopLogger(), func() {}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating log directory: %w", err)
	}
	zl := log.BuildZapLogger(log.Config{Level: "warn", Format: "json", OutputFile: path})
	return log.NewZapLogger(zl), func() { _ = zl.Sync() }, nil
}

func (s *Server) startUI(opts Options) {
	cfg := &uiconfig.Config{
		TemporalGRPCAddress: s.hostPort,
		Host:                opts.IP,
		Port:                opts.UIPort,
		EnableUI:            true,
		DefaultNamespace:    opts.Namespace,
		HideLogs:            true,
		DisableNewsFetch:    true,
		CORS:                uiconfig.CORS{CookieInsecure: true},
	}
	s.ui = uiserver.NewServer(uioptions.WithConfigProvider(cfg))
	s.uiURL = "http://" + net.JoinHostPort(opts.IP, strconv.Itoa(opts.UIPort))
	// Start blocks until Stop; the port was checked free beforehand, since
	// the UI server exits the process on a listen error.
	go func() { _ = s.ui.Start() }()
}

// HostPort is the frontend's gRPC address, for client.Dial.
func (s *Server) HostPort() string { return s.hostPort }

// Namespace is the namespace the server was started with.
func (s *Server) Namespace() string { return s.namespace }

// UIURL is the Web UI's address, empty when it is not running.
func (s *Server) UIURL() string { return s.uiURL }

// WaitUI blocks until the Web UI answers, or ctx ends.
func (s *Server) WaitUI(ctx context.Context) error {
	if s.uiURL == "" {
		return nil
	}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.uiURL+"/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for web ui: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop stops the UI and the server.
func (s *Server) Stop() error {
	if s.ui != nil {
		s.ui.Stop()
	}
	err := s.server.Stop()
	s.logCloser()
	return err
}

// freePorts returns n distinct free ports. It holds every listener until
// all are chosen, so the kernel cannot hand the same port out twice.
func freePorts(ip string, n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func checkFree(ip string, port int, what string) error {
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s %s is not free: %w", what, addr, err)
	}
	return l.Close()
}

func waitListening(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return conn.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for temporal frontend %s: %w", addr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

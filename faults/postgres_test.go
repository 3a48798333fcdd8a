package faults

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// pgCluster is a Postgres cluster of the test's own, which it may stop
// and start: the machine's shared server is never touched.
type pgCluster struct {
	t    *testing.T
	bin  string
	dir  string
	port int
	// runAs is the user the server runs as when the test runs as root,
	// which Postgres refuses.
	runAs string
}

// startPostgres creates a cluster in a temp dir and starts it on a free
// port. Without Postgres's binaries the test is skipped, or fails under
// CI.
func startPostgres(t *testing.T) *pgCluster {
	t.Helper()
	bin := postgresBin()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("postgres binaries (initdb, pg_ctl) not found under CI")
		}
		t.Skip("postgres binaries (initdb, pg_ctl) not found")
	}
	c := &pgCluster{t: t, bin: bin, port: freePort(t)}
	if os.Geteuid() == 0 {
		c.runAs = "postgres"
		if _, err := user.Lookup(c.runAs); err != nil {
			t.Skipf("running as root and there is no postgres user to run a cluster as: %v", err)
		}
	}

	// Not t.TempDir: its parents are private to root, and the server's
	// user must reach the directory.
	dir, err := os.MkdirTemp("", "ctmflow-faults-pg-")
	if err != nil {
		t.Fatal(err)
	}
	c.dir = dir
	t.Cleanup(func() {
		_ = c.run("pg_ctl", "-D", c.data(), "-m", "immediate", "stop")
		_ = os.RemoveAll(dir)
	})
	if c.runAs != "" {
		if out, err := exec.Command("chown", "-R", c.runAs, dir).CombinedOutput(); err != nil {
			t.Fatalf("chown %s: %v\n%s", dir, err, out)
		}
	}

	if err := c.run("initdb", "-D", c.data(), "-U", "postgres", "-A", "trust", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v", err)
	}
	c.start()
	err = c.run("createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(c.port), "-U", "postgres", "ctmflow")
	if err != nil {
		t.Fatalf("createdb: %v", err)
	}
	return c
}

func (c *pgCluster) data() string { return filepath.Join(c.dir, "data") }

// URL is the cluster's ctmflow database.
func (c *pgCluster) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/ctmflow?sslmode=disable", c.port)
}

// start starts the server and waits until it accepts connections.
func (c *pgCluster) start() {
	c.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=100", c.port, c.dir)
	log := filepath.Join(c.dir, "server.log")
	err := c.run("pg_ctl", "-D", c.data(), "-l", log, "-o", opts, "-w", "-t", "60", "start")
	if err != nil {
		out, _ := os.ReadFile(log)
		c.t.Fatalf("starting postgres: %v\n%s", err, out)
	}
}

// crash stops the server the hard way: every backend killed at once,
// recovery from the write-ahead log on the next start.
func (c *pgCluster) crash() {
	c.t.Helper()
	if err := c.run("pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "stop"); err != nil {
		c.t.Fatalf("stopping postgres: %v", err)
	}
}

func (c *pgCluster) run(tool string, args ...string) error {
	path := filepath.Join(c.bin, tool)
	var cmd *exec.Cmd
	if c.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.runAs, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = c.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", tool, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// postgresBin finds the newest installed Postgres's bin directory.
func postgresBin() string {
	if path, err := exec.LookPath("pg_config"); err == nil {
		if out, err := exec.Command(path, "--bindir").Output(); err == nil {
			dir := strings.TrimSpace(string(out))
			if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
				return dir
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	return ""
}

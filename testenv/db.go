// Package testenv gives tests real parts to run against: a fresh Postgres
// database or SQLite file per test, and an in-process Temporal server.
//
// Postgres comes from TEST_POSTGRES_URL (default: the local server with
// trust auth). When it cannot be reached, Postgres tests fail under CI
// (CI set) and are skipped, with the reason, elsewhere: a laptop with only
// Go still runs everything else.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"github.com/ctmflow/ctmflow/store"
)

// DefaultPostgresURL is the server tests use when TEST_POSTGRES_URL is
// unset: the one CI starts, reached with trust auth.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Database is one database a test can run against.
type Database struct {
	// Name is the dialect, usable as a subtest name.
	Name string
	// URL opens it with store.Open.
	URL string
}

// Databases returns a fresh SQLite file and a fresh Postgres database, for
// tests that must hold on both.
func Databases(t testing.TB) []Database {
	t.Helper()
	return []Database{
		{Name: store.SQLite, URL: SQLiteURL(t)},
		{Name: store.Postgres, URL: PostgresURL(t)},
	}
}

// SQLiteURL returns the URL of a new SQLite file in the test's temp dir.
func SQLiteURL(t testing.TB) string {
	t.Helper()
	return "sqlite:" + filepath.Join(t.TempDir(), "ctmflow.db")
}

// PostgresURL creates a database for this test alone and returns its URL;
// the database is dropped when the test ends.
func PostgresURL(t testing.TB) string {
	t.Helper()
	admin := os.Getenv("TEST_POSTGRES_URL")
	if admin == "" {
		admin = DefaultPostgresURL
	}

	db, err := sql.Open("pgx", admin)
	if err != nil {
		unreachable(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		unreachable(t, err)
	}

	name := "ctmflow_test_" + randomHex(6)
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		_ = db.Close()
		t.Fatalf("creating test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		if err != nil {
			t.Logf("dropping test database %s: %v", name, err)
		}
		_ = db.Close()
	})

	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("parsing TEST_POSTGRES_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func unreachable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("postgres unreachable under CI: %v", err)
	}
	t.Skipf("postgres unreachable, skipping (set TEST_POSTGRES_URL; CI fails here instead): %v", err)
}

// Store opens and migrates the database at url, closing it with the test.
func Store(t testing.TB, url string) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, url, store.Options{})
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	return st
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("reading random bytes: %v", err))
	}
	return hex.EncodeToString(b)
}

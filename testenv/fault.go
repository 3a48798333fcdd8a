package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// OpenSQL opens the database at a store URL (postgres://… or sqlite:PATH)
// with database/sql, for tests that go around the store on purpose. It is
// closed with the test.
func OpenSQL(t testing.TB, dbURL string) *sql.DB {
	t.Helper()
	driver, dsn := "pgx", dbURL
	if path, ok := strings.CutPrefix(dbURL, "sqlite:"); ok {
		driver, dsn = "sqlite", "file:"+path+"?_pragma=busy_timeout(10000)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatalf("opening %s: %v", driver, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// FailUpdates makes every UPDATE that sets column of table fail with
// message, until the returned repair runs (at the latest when the test
// ends). It is a real fault in the real database, the way a CRM
// migration holding the column would cause one: the store, the activity
// and Temporal's retries see exactly what they would in production.
// message must not contain a quote.
func FailUpdates(t testing.TB, dbURL, table, column, message string) (repair func()) {
	t.Helper()
	db := OpenSQL(t, dbURL)
	name := "ctmflow_test_fail_" + table + "_" + column
	var install, remove []string
	if strings.HasPrefix(dbURL, "sqlite:") {
		install = []string{fmt.Sprintf(
			"CREATE TRIGGER %s BEFORE UPDATE OF %s ON %s BEGIN SELECT RAISE(ABORT, '%s'); END",
			name, column, table, message)}
		remove = []string{"DROP TRIGGER IF EXISTS " + name}
	} else {
		install = []string{
			fmt.Sprintf("CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS "+
				"$$ BEGIN RAISE EXCEPTION '%s'; END $$", name, message),
			fmt.Sprintf("CREATE TRIGGER %s BEFORE UPDATE OF %s ON %s FOR EACH ROW EXECUTE FUNCTION %s()",
				name, column, table, name),
		}
		remove = []string{
			fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", name, table),
			fmt.Sprintf("DROP FUNCTION IF EXISTS %s()", name),
		}
	}
	exec := func(stmts []string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, stmt := range stmts {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
		return nil
	}
	if err := exec(install); err != nil {
		t.Fatalf("installing fault: %v", err)
	}

	var once sync.Once
	repair = func() {
		once.Do(func() {
			if err := exec(remove); err != nil {
				t.Errorf("repairing fault: %v", err)
			}
		})
	}
	t.Cleanup(repair)
	return repair
}

// BlockUpdates makes every UPDATE that sets column of table wait until
// the returned release runs (at the latest when the test ends), the way
// a long lock held by a CRM batch job would. The update waits on an
// advisory lock the test holds, so only the blocked step waits: every
// other write goes on. Postgres only.
func BlockUpdates(t testing.TB, pgURL, table, column string) (release func()) {
	t.Helper()
	if strings.HasPrefix(pgURL, "sqlite:") {
		t.Fatalf("BlockUpdates needs Postgres, got %s", pgURL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := OpenSQL(t, pgURL)
	// The advisory lock belongs to this session: keep one connection.
	holder, err := db.Conn(ctx)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	const key = 7_310_042
	name := "ctmflow_test_block_" + table + "_" + column
	stmts := []string{
		fmt.Sprintf("SELECT pg_advisory_lock(%d)", key),
		fmt.Sprintf("CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS "+
			"$$ BEGIN PERFORM pg_advisory_xact_lock(%d); RETURN NEW; END $$", name, key),
		fmt.Sprintf("CREATE TRIGGER %s BEFORE UPDATE OF %s ON %s FOR EACH ROW EXECUTE FUNCTION %s()",
			name, column, table, name),
	}
	for _, stmt := range stmts {
		if _, err := holder.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("installing block: %s: %v", stmt, err)
		}
	}

	var once sync.Once
	release = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// Unlock first: dropping the trigger waits for the blocked
			// update, which waits for the lock.
			for _, stmt := range []string{
				fmt.Sprintf("SELECT pg_advisory_unlock(%d)", key),
				fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", name, table),
				fmt.Sprintf("DROP FUNCTION IF EXISTS %s()", name),
			} {
				if _, err := holder.ExecContext(ctx, stmt); err != nil {
					t.Errorf("releasing block: %s: %v", stmt, err)
				}
			}
			_ = holder.Close()
		})
	}
	t.Cleanup(release)
	return release
}

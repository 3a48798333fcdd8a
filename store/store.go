// Package store is the CRM's storage: leads, calls, messages, lead events
// and the delivery inbox, over Postgres in production and SQLite as the
// zero-setup development default.
//
// Every write is idempotent, keyed by a unique index, because Temporal
// retries activities and CTM repeats webhooks. Driver errors are mapped to
// this package's sentinels; callers never import a database driver.
package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/ctmflow/ctmflow/models"

	// modernc's pure-Go SQLite registers the "sqlite" driver. It is already
	// linked by the Temporal server, and needs no C toolchain.
	_ "modernc.org/sqlite"
)

// Sentinel errors callers test with errors.Is.
var (
	// ErrNotFound means no record matched.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a unique key is already taken.
	ErrConflict = errors.New("conflicting record")
)

// Dialects.
const (
	Postgres = "postgres"
	SQLite   = "sqlite"
)

// Options tune the connection pool.
type Options struct {
	// MaxOpenConns caps open Postgres connections. Default 20. SQLite
	// always gets one connection: it allows one writer at a time, and a
	// second connection only waits in SQLite's busy handler, which sleeps
	// in steps of up to 100 ms, where Go's pool would queue in order.
	MaxOpenConns int
	// CreateOnlyFields are the lead fields (from models.LeadFields) CTM sets
	// only while empty. Nil means DefaultCreateOnlyFields; empty, none.
	CreateOnlyFields []string
}

// Store is the CRM database.
type Store struct {
	db      *gorm.DB
	dialect string
	now     func() time.Time
	// createOnly holds the lead fields CTM sets only while empty.
	createOnly map[string]bool
}

// Open connects to the database at dsn: a postgres:// (or postgresql://)
// URL, or sqlite:PATH for a SQLite file.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	dialect, dialector, err := dialectorFor(dsn)
	if err != nil {
		return nil, err
	}

	db, err := gorm.Open(dialector, &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		return nil, fmt.Errorf("opening %s database: %w", dialect, err)
	}

	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("opening %s database: %w", dialect, err)
	}
	maxOpen := opts.MaxOpenConns
	switch {
	case dialect == SQLite:
		maxOpen = 1
	case maxOpen <= 0:
		maxOpen = 20
	}
	sqlDB.SetMaxOpenConns(maxOpen)
	sqlDB.SetMaxIdleConns(maxOpen)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)

	createOnly := opts.CreateOnlyFields
	if createOnly == nil {
		createOnly = DefaultCreateOnlyFields
	}
	s := &Store{
		db:         db,
		dialect:    dialect,
		now:        func() time.Time { return time.Now().UTC() },
		createOnly: map[string]bool{},
	}
	for _, f := range createOnly {
		if !slices.Contains(models.LeadFields, f) {
			_ = sqlDB.Close()
			return nil, fmt.Errorf("create-only field %q is not a lead field", f)
		}
		s.createOnly[f] = true
	}
	if err := s.Ping(ctx); err != nil {
		_ = sqlDB.Close()
		return nil, err
	}
	return s, nil
}

func dialectorFor(dsn string) (string, gorm.Dialector, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return Postgres, postgres.Open(dsn), nil
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if path == "" {
			return "", nil, errors.New("sqlite URL names no file")
		}
		// WAL lets readers run beside the writer; immediate transactions
		// take the write lock up front, so two writers queue on
		// busy_timeout instead of failing with "database is locked".
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Add("_pragma", "foreign_keys(1)")
		q.Set("_txlock", "immediate")
		return SQLite, sqlite.Dialector{
			DriverName: "sqlite",
			DSN:        "file:" + path + "?" + q.Encode(),
		}, nil
	default:
		return "", nil, errors.New("database URL must start with postgres://, postgresql:// or sqlite:")
	}
}

// Dialect names the database behind the store: Postgres or SQLite.
func (s *Store) Dialect() string { return s.dialect }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("reaching %s database: %w", s.dialect, err)
	}
	return nil
}

// Close releases the connection pool.
func (s *Store) Close() error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// migrateLockKey is the Postgres advisory lock held while migrating, so
// that replicas starting together do not race on DDL.
const migrateLockKey = 0x63746d666c6f77 // "ctmflow"

// Migrate creates or updates the schema. It is safe to run concurrently
// from several processes and repeatedly.
func (s *Store) Migrate(ctx context.Context) error {
	db := s.db.WithContext(ctx)
	if s.dialect != Postgres {
		if err := db.AutoMigrate(models.All()...); err != nil {
			return fmt.Errorf("migrating schema: %w", err)
		}
		return nil
	}
	return db.Connection(func(conn *gorm.DB) error {
		if err := conn.Exec("SELECT pg_advisory_lock(?)", migrateLockKey).Error; err != nil {
			return fmt.Errorf("taking migration lock: %w", err)
		}
		defer conn.Exec("SELECT pg_advisory_unlock(?)", migrateLockKey)

		if err := conn.AutoMigrate(models.All()...); err != nil {
			return fmt.Errorf("migrating schema: %w", err)
		}
		return nil
	})
}

// mapErr turns driver errors into the package's sentinels, keeping the
// driver's text out: a Postgres error detail can quote the values of the
// row, which here are phone numbers.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return ErrNotFound
	}
	if isUniqueViolation(err) {
		return ErrConflict
	}
	return err
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	// modernc's SQLite reports SQLITE_CONSTRAINT_UNIQUE only in its text.
	return strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// transaction runs fn in a transaction. On Postgres, rows read with
// forUpdate are locked until it ends; SQLite transactions hold the
// database's single write lock from their start.
func (s *Store) transaction(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return mapErr(s.db.WithContext(ctx).Transaction(fn))
}

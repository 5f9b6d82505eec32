// Package eventlog is Courier's durable history: every event emitted and
// every delivery attempt, in SQL, queried, archived, deleted and purged as
// CloudStack operators do with their event table.
//
// A Store is one database: by default a SQLite file in the node's data_dir
// (pure Go, no cgo, WAL mode), or a PostgreSQL database that many nodes
// share. Both get the same schema, from migrations embedded in the binary,
// and the same queries. The store only reads and writes SQL: what feeds it
// (the outbox and the attempts stream) lives in the worker.
package eventlog

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

//go:embed migrations/*.sql
var migrations embed.FS

// FileName is the SQLite file's name inside data_dir.
const FileName = "eventlog.db"

// Store is an open event log.
type Store struct {
	db       *sql.DB
	postgres bool
	path     string // the SQLite file; empty for PostgreSQL

	mu    sync.Mutex
	stmts map[string]*sql.Stmt // prepared INSERTs, by their head
}

// Open opens the event log and brings its schema up to date. An empty url
// means the SQLite file in dataDir; a postgres:// or postgresql:// url a
// PostgreSQL database.
func Open(ctx context.Context, url, dataDir string) (*Store, error) {
	s := &Store{}
	var err error
	switch {
	case url == "":
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("event log: %w", err)
		}
		s.path = filepath.Join(dataDir, FileName)
		// WAL lets queries read while the ingest writes. FULL syncs the WAL
		// at every commit: the ingest acknowledges a batch to the stream
		// after its commit, so a batch must be on disk by then or a power
		// loss would leave a hole no one reads again. One fsync per batch
		// of hundreds of events costs little.
		dsn := "file:" + s.path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=case_sensitive_like(ON)&_txlock=immediate"
		s.db, err = sql.Open("sqlite", dsn)
		if err == nil {
			// One writer at a time is SQLite's rule; a few readers beside it.
			s.db.SetMaxOpenConns(4)
		}
	case strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://"):
		s.postgres = true
		s.db, err = sql.Open("pgx", url)
	default:
		return nil, fmt.Errorf("event_log.url: want postgres://..., got %q", redact(url))
	}
	if err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("open event log %s: %w", s.Where(), err)
	}
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	dialect := goose.DialectSQLite3
	if s.postgres {
		dialect = goose.DialectPostgres
	}
	p, err := goose.NewProvider(dialect, s.db, mustSub(migrations, "migrations"))
	if err != nil {
		return fmt.Errorf("event log migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("event log %s: migrate: %w", s.Where(), err)
	}
	return nil
}

// Where names the database for logs and errors, without credentials.
func (s *Store) Where() string {
	if s.path != "" {
		return s.path
	}
	return "postgresql"
}

// Shared reports whether several nodes write this log (PostgreSQL): then
// each event is read from the outbox by one node only.
func (s *Store) Shared() bool { return s.postgres }

// Close closes the database.
func (s *Store) Close() error {
	s.mu.Lock()
	for _, stmt := range s.stmts {
		stmt.Close()
	}
	s.stmts = nil
	s.mu.Unlock()
	return s.db.Close()
}

// Size is the database's size in bytes on disk.
func (s *Store) Size(ctx context.Context) (int64, error) {
	if s.postgres {
		var n int64
		err := s.db.QueryRowContext(ctx, `SELECT pg_total_relation_size('events') + pg_total_relation_size('attempts')`).Scan(&n)
		return n, err
	}
	var total int64
	for _, p := range []string{s.path, s.path + "-wal"} {
		if fi, err := os.Stat(p); err == nil {
			total += fi.Size()
		}
	}
	return total, nil
}

// rebind turns the ? placeholders every query is written with into
// PostgreSQL's $1, $2, ... The queries hold no literal question marks.
func (s *Store) rebind(q string) string {
	if !s.postgres {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// redact drops a URL's password for messages.
func redact(url string) string {
	if at := strings.LastIndex(url, "@"); at > 0 {
		if scheme := strings.Index(url, "://"); scheme >= 0 && scheme < at {
			return url[:scheme+3] + "***" + url[at:]
		}
	}
	return url
}

// ErrNotFound says no event matched: an id that is not in the log (or not
// the caller's account's), or a selection that matched nothing.
var ErrNotFound = errors.New("no events found matching the given criteria")

// ErrBadFilter is wrapped by every error about a filter or selection the
// caller gave.
var ErrBadFilter = errors.New("bad filter")

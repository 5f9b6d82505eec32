package testutil

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// PostgresURL is the test database: COURIER_TEST_POSTGRES_URL, or the
// machine's PostgreSQL (scripts/services.sh starts it).
func PostgresURL() string {
	if u := os.Getenv("COURIER_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

var schemas atomic.Int64

// PostgresSchema creates an empty schema for one test and returns a URL
// whose connections use it, so tests run side by side without seeing each
// other's tables; the schema is dropped at the end. Without PostgreSQL the
// test skips, except in CI, where that fails it.
func PostgresSchema(t testing.TB) string {
	t.Helper()
	base := PostgresURL()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", base)
	if err == nil {
		err = db.PingContext(ctx)
	}
	if err != nil {
		Require(t, fmt.Errorf("PostgreSQL at %s is unreachable: %w", base, err))
	}
	schema := fmt.Sprintf("courier_test_%d_%d", os.Getpid(), schemas.Add(1))
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		db.Close()
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
		db.Close()
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

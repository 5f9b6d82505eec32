package eventlog

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/courierhq/courier/event"
)

// Attempt is one delivery attempt as the log keeps it. Batch and Index name
// the record in the attempts stream, which makes writing it twice harmless.
type Attempt struct {
	Batch uint64 `json:"-"`
	Index int    `json:"-"`
	event.Attempt
}

// AddEvents logs events in one transaction and returns how many were new:
// an id already logged (read again after a crash, or by another node of a
// shared database) is left as it is.
func (s *Store) AddEvents(ctx context.Context, events []event.Envelope) (int, error) {
	return s.AddTracedEvents(ctx, events, nil)
}

// AddTracedEvents is AddEvents with the id of the trace each event started
// (traceIDs[i] for events[i]; nil or "" when unknown).
func (s *Store) AddTracedEvents(ctx context.Context, events []event.Envelope, traceIDs []string) (int, error) {
	now := micros(time.Now())
	return s.insert(ctx, `INSERT INTO events (id, event_type, source, node, event_time, event_key, level, state, start_id,
		description, account, domain, user_name, resource_id, resource_type, data, logged_at, trace_id) VALUES `, 18,
		` ON CONFLICT (id) DO NOTHING`, len(events), func(i int) []any {
			e := &events[i]
			trace := ""
			if i < len(traceIDs) {
				trace = traceIDs[i]
			}
			return []any{e.ID, e.Type, e.Source, e.Node, micros(e.Time), e.Key, string(e.Level), string(e.State), e.StartID,
				e.Description, e.Account, e.Domain, e.User, e.ResourceID, e.ResourceType, string(e.Data), now, trace}
		})
}

// AddAttempts logs attempt records in one transaction and returns how many
// were new.
func (s *Store) AddAttempts(ctx context.Context, attempts []Attempt) (int, error) {
	return s.insert(ctx, `INSERT INTO attempts (batch, idx, event_id, sink, attempt, outcome, status, duration_us, error, response, node, at) VALUES `, 12,
		` ON CONFLICT (batch, idx) DO NOTHING`, len(attempts), func(i int) []any {
			a := &attempts[i]
			return []any{int64(a.Batch), a.Index, a.EventID, a.Sink, a.Number, a.Outcome, a.Status,
				a.Duration.Microseconds(), a.Error, a.Response, a.Node, micros(a.At)}
		})
}

// rowsPerInsert is how many rows one INSERT carries: one statement per row
// cost PostgreSQL a network round trip each (5-15k events/s measured);
// 100 rows a statement reached 22k.
const rowsPerInsert = 100

// insert writes n rows in one transaction, rowsPerInsert to a statement,
// and counts the rows it added. head ends with VALUES; cols is the number
// of columns; row gives row i's values.
func (s *Store) insert(ctx context.Context, head string, cols int, tail string, n int, row func(int) []any) (int, error) {
	if n == 0 {
		return 0, nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("event log: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	added := 0
	for start := 0; start < n; start += rowsPerInsert {
		end := min(start+rowsPerInsert, n)
		args := make([]any, 0, (end-start)*cols)
		for i := start; i < end; i++ {
			args = append(args, row(i)...)
		}
		var (
			res sql.Result
			err error
		)
		if end-start == rowsPerInsert {
			// Full chunks reuse one prepared statement: preparing it
			// anew took a fifth of the ingest's CPU.
			var stmt *sql.Stmt
			if stmt, err = s.prepared(ctx, head, cols, tail); err == nil {
				res, err = tx.StmtContext(ctx, stmt).ExecContext(ctx, args...)
			}
		} else {
			res, err = tx.ExecContext(ctx, s.insertSQL(head, cols, tail, end-start), args...)
		}
		if err != nil {
			return 0, fmt.Errorf("event log: write: %w", err)
		}
		if k, err := res.RowsAffected(); err == nil {
			added += int(k)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("event log: commit: %w", err)
	}
	return added, nil
}

// insertSQL is the INSERT of rows rows.
func (s *Store) insertSQL(head string, cols int, tail string, rows int) string {
	tuple := "(?" + strings.Repeat(", ?", cols-1) + ")"
	return s.rebind(head + tuple + strings.Repeat(", "+tuple, rows-1) + tail)
}

// prepared is the full-chunk INSERT, prepared once per store.
func (s *Store) prepared(ctx context.Context, head string, cols int, tail string) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if stmt, ok := s.stmts[head]; ok {
		return stmt, nil
	}
	stmt, err := s.db.PrepareContext(ctx, s.insertSQL(head, cols, tail, rowsPerInsert))
	if err != nil {
		return nil, err
	}
	if s.stmts == nil {
		s.stmts = map[string]*sql.Stmt{}
	}
	s.stmts[head] = stmt
	return stmt, nil
}

package eventlog

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/courierhq/courier/event"
)

// Attempt is one delivery attempt as the log keeps it. Batch and Index name
// the record in the attempts stream, which makes writing it twice harmless.
type Attempt struct {
	Batch    uint64        `json:"-"`
	Index    int           `json:"-"`
	EventID  string        `json:"event_id"`
	Sink     string        `json:"sink"`
	Attempt  int           `json:"attempt"`
	Outcome  string        `json:"outcome"`
	Status   int           `json:"status,omitempty"`
	Duration time.Duration `json:"duration"`
	Error    string        `json:"error,omitempty"`
	Response string        `json:"response,omitempty"`
	Node     string        `json:"node,omitempty"`
	At       time.Time     `json:"at"`
}

// AddEvents logs events in one transaction and returns how many were new:
// an id already logged (read again after a crash, or by another node of a
// shared database) is left as it is.
func (s *Store) AddEvents(ctx context.Context, events []event.Envelope) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	q := s.rebind(`INSERT INTO events (id, event_type, source, node, event_time, event_key, level, state, start_id,
		description, account, domain, user_name, resource_id, resource_type, data, logged_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`)
	now := micros(time.Now())
	return s.inTx(ctx, q, len(events), func(stmt *sql.Stmt, i int) (sql.Result, error) {
		e := &events[i]
		return stmt.ExecContext(ctx, e.ID, e.Type, e.Source, e.Node, micros(e.Time), e.Key, string(e.Level), string(e.State), e.StartID,
			e.Description, e.Account, e.Domain, e.User, e.ResourceID, e.ResourceType, string(e.Data), now)
	})
}

// AddAttempts logs attempt records in one transaction and returns how many
// were new.
func (s *Store) AddAttempts(ctx context.Context, attempts []Attempt) (int, error) {
	if len(attempts) == 0 {
		return 0, nil
	}
	q := s.rebind(`INSERT INTO attempts (batch, idx, event_id, sink, attempt, outcome, status, duration_us, error, response, node, at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (batch, idx) DO NOTHING`)
	return s.inTx(ctx, q, len(attempts), func(stmt *sql.Stmt, i int) (sql.Result, error) {
		a := &attempts[i]
		return stmt.ExecContext(ctx, int64(a.Batch), a.Index, a.EventID, a.Sink, a.Attempt, a.Outcome, a.Status,
			a.Duration.Microseconds(), a.Error, a.Response, a.Node, micros(a.At))
	})
}

// inTx runs one prepared statement n times in a transaction and counts the
// rows it added.
func (s *Store) inTx(ctx context.Context, q string, n int, exec func(*sql.Stmt, int) (sql.Result, error)) (int, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("event log: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	stmt, err := tx.PrepareContext(ctx, q)
	if err != nil {
		return 0, fmt.Errorf("event log: prepare: %w", err)
	}
	defer stmt.Close()
	added := 0
	for i := range n {
		res, err := exec(stmt, i)
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

package eventlog

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Selection names the events to archive or delete, by CloudStack's rules:
// ids, or a type and/or an end date with an optional start date (both
// dates inclusive). Account, when set, keeps the selection within one
// account.
type Selection struct {
	IDs        []string
	Type       string
	Start, End time.Time
	Account    string
}

// Validate applies CloudStack's rules to the selection.
func (s *Selection) Validate() error {
	switch {
	case len(s.IDs) > 0 && (s.Type != "" || !s.Start.IsZero() || !s.End.IsZero()):
		return fmt.Errorf("%w: give either ids, or a type and/or an end date, not both", ErrBadFilter)
	case !s.Start.IsZero() && s.End.IsZero():
		return fmt.Errorf("%w: a start date needs an end date", ErrBadFilter)
	case len(s.IDs) == 0 && s.Type == "" && s.End.IsZero():
		return fmt.Errorf("%w: give ids, a type or an end date", ErrBadFilter)
	case !s.Start.IsZero() && s.End.Before(s.Start):
		return fmt.Errorf("%w: the end date is before the start date", ErrBadFilter)
	case len(s.IDs) > MaxPageSize:
		return fmt.Errorf("%w: at most %d ids at once", ErrBadFilter, MaxPageSize)
	}
	return nil
}

func (s *Selection) where() (string, []any) {
	var w conds
	if len(s.IDs) > 0 {
		args := make([]any, len(s.IDs))
		for i, id := range s.IDs {
			args[i] = id
		}
		w.add("id IN (?"+strings.Repeat(", ?", len(args)-1)+")", args...)
	}
	w.typeGlob(s.Type)
	w.timeRange(s.Start, s.End)
	w.eq("account", s.Account)
	return w.sql(), w.args
}

// Archive marks the selected events archived: kept for audit, hidden from
// List unless asked for. It returns how many it archived (events already
// archived count, so archiving twice answers the same), or ErrNotFound.
func (s *Store) Archive(ctx context.Context, sel Selection) (int64, error) {
	if err := sel.Validate(); err != nil {
		return 0, err
	}
	where, args := sel.where()
	res, err := s.db.ExecContext(ctx, s.rebind(`UPDATE events SET archived = TRUE WHERE `+where), args...)
	if err != nil {
		return 0, fmt.Errorf("event log: archive: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("event log: archive: %w", err)
	}
	return found(n, nil)
}

// Delete removes the selected events and their attempts from the log.
// Neither this nor Archive touches delivery: an event still owed to a sink
// is still delivered.
func (s *Store) Delete(ctx context.Context, sel Selection) (int64, error) {
	if err := sel.Validate(); err != nil {
		return 0, err
	}
	where, args := sel.where()
	return found(s.deleteWhere(ctx, where, args))
}

// Purge deletes every event stored before cutoff, and the attempts of
// those events, as CloudStack's event.purge.delay does.
func (s *Store) Purge(ctx context.Context, cutoff time.Time) (int64, error) {
	n, err := s.deleteWhere(ctx, "event_time < ?", []any{micros(cutoff)})
	if err != nil {
		return 0, err
	}
	// Attempts whose event is not in the log (deleted, or older than the
	// log) go too, by their own time.
	if _, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM attempts WHERE at < ?`), micros(cutoff)); err != nil {
		return n, fmt.Errorf("event log: purge attempts: %w", err)
	}
	return n, nil
}

func (s *Store) deleteWhere(ctx context.Context, where string, args []any) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("event log: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM attempts WHERE event_id IN (SELECT id FROM events WHERE `+where+`)`), args...); err != nil {
		return 0, fmt.Errorf("event log: delete attempts: %w", err)
	}
	res, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM events WHERE `+where), args...)
	if err != nil {
		return 0, fmt.Errorf("event log: delete: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("event log: delete: %w", err)
	}
	if n == 0 {
		return 0, nil // nothing to commit
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("event log: commit: %w", err)
	}
	return n, nil
}

func found(n int64, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, ErrNotFound
	}
	return n, nil
}

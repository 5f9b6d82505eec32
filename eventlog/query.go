package eventlog

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/courierhq/courier/event"
)

// DefaultPageSize and MaxPageSize bound one page of a listing.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Filter selects events for List. Zero fields do not filter.
type Filter struct {
	// Type is a glob: * any run of characters, ? one character.
	Type       string
	Level      event.Level
	State      event.State
	StartID    string // the event with this id and every event linked to it
	Account    string
	Domain     string
	ResourceID string
	// Keyword matches the type, the description or the data, ignoring case.
	Keyword string
	// Start and End bound the event's time, both inclusive.
	Start, End time.Time
	// Archived lists archived events instead of the others.
	Archived bool
	// Page counts from 1; PageSize is at most MaxPageSize.
	Page, PageSize int
}

// Event is a logged event.
type Event struct {
	event.Envelope
	Archived bool `json:"archived"`
	// TraceID is the W3C trace id of the trace the event started, when
	// its producer traced it.
	TraceID string `json:"trace_id,omitempty"`
	// Deliveries are per sink, for the sinks that made an attempt; the
	// caller adds the sinks that did not (pending or filtered).
	Deliveries map[string]Delivery `json:"deliveries,omitempty"`
}

// Delivery is where one event stands with one sink.
type Delivery struct {
	State    string `json:"state"` // delivered, pending, dead_lettered or filtered
	Attempts int    `json:"attempts"`
}

// Delivery states.
const (
	Delivered    = "delivered"
	Pending      = "pending"
	DeadLettered = "dead_lettered"
	Filtered     = "filtered"
)

// Validate reports a filter that cannot be answered.
func (f *Filter) Validate() error {
	switch f.Level {
	case "", event.LevelInfo, event.LevelWarn, event.LevelError:
	default:
		return fmt.Errorf("%w: level %q: want INFO, WARN or ERROR", ErrBadFilter, f.Level)
	}
	switch f.State {
	case "", event.StateCreated, event.StateScheduled, event.StateStarted, event.StateCompleted:
	default:
		return fmt.Errorf("%w: state %q: want Created, Scheduled, Started or Completed", ErrBadFilter, f.State)
	}
	if !f.Start.IsZero() && !f.End.IsZero() && f.End.Before(f.Start) {
		return fmt.Errorf("%w: the end date %s is before the start date %s", ErrBadFilter, f.End.Format(time.RFC3339), f.Start.Format(time.RFC3339))
	}
	if f.Page < 0 {
		return fmt.Errorf("%w: page %d: pages count from 1", ErrBadFilter, f.Page)
	}
	if f.PageSize < 0 || f.PageSize > MaxPageSize {
		return fmt.Errorf("%w: page size %d: want 1 to %d", ErrBadFilter, f.PageSize, MaxPageSize)
	}
	return nil
}

// where builds the filter's conditions.
func (f *Filter) where() (string, []any) {
	var w conds
	w.add("archived = ?", f.Archived)
	w.typeGlob(f.Type)
	w.eq("level", string(f.Level))
	w.eq("state", string(f.State))
	if f.StartID != "" {
		w.add("(id = ? OR start_id = ?)", f.StartID, f.StartID)
	}
	w.eq("account", f.Account)
	w.eq("domain", f.Domain)
	w.eq("resource_id", f.ResourceID)
	if f.Keyword != "" {
		k := "%" + escapeLike(strings.ToLower(f.Keyword)) + "%"
		w.add(`(LOWER(event_type) LIKE ? ESCAPE '\' OR LOWER(description) LIKE ? ESCAPE '\' OR LOWER(data) LIKE ? ESCAPE '\')`, k, k, k)
	}
	w.timeRange(f.Start, f.End)
	return w.sql(), w.args
}

// List returns one page of matching events, newest first, with their
// deliveries.
func (s *Store) List(ctx context.Context, f Filter) ([]Event, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	size := f.PageSize
	if size == 0 {
		size = DefaultPageSize
	}
	page := max(f.Page, 1)
	where, args := f.where()
	q := s.rebind(`SELECT ` + eventColumns + ` FROM events WHERE ` + where +
		` ORDER BY event_time DESC, id DESC LIMIT ? OFFSET ?`)
	args = append(args, size, (page-1)*size)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("event log: list: %w", err)
	}
	events, err := scanEvents(rows)
	if err != nil {
		return nil, err
	}
	return events, s.addDeliveries(ctx, events)
}

// Get returns one event and its attempts, oldest first. With account set,
// an event of another account is ErrNotFound, as if it did not exist.
func (s *Store) Get(ctx context.Context, id, account string) (Event, []Attempt, error) {
	q := `SELECT ` + eventColumns + ` FROM events WHERE id = ?`
	args := []any{id}
	if account != "" {
		q += ` AND account = ?`
		args = append(args, account)
	}
	rows, err := s.db.QueryContext(ctx, s.rebind(q), args...)
	if err != nil {
		return Event{}, nil, fmt.Errorf("event log: show %s: %w", id, err)
	}
	events, err := scanEvents(rows)
	if err != nil {
		return Event{}, nil, err
	}
	if len(events) == 0 {
		return Event{}, nil, fmt.Errorf("event %s: %w", id, ErrNotFound)
	}
	attempts, err := s.Attempts(ctx, id)
	if err != nil {
		return Event{}, nil, err
	}
	ev := events[0]
	ev.Deliveries = deliveries(attempts)
	return ev, attempts, nil
}

// Attempts returns every logged attempt of one event, on every sink and
// node, oldest first.
func (s *Store) Attempts(ctx context.Context, id string) ([]Attempt, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT `+attemptColumns+`
		FROM attempts WHERE event_id = ? ORDER BY at, batch, idx`), id)
	if err != nil {
		return nil, fmt.Errorf("event log: attempts of %s: %w", id, err)
	}
	return scanAttempts(rows)
}

// SinkAttempts returns a sink's latest attempts, on every node, newest
// first: what a sink's page in the console shows.
func (s *Store) SinkAttempts(ctx context.Context, sink string, limit int) ([]Attempt, error) {
	if limit <= 0 || limit > MaxPageSize {
		limit = DefaultPageSize
	}
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT `+attemptColumns+`
		FROM attempts WHERE sink = ? ORDER BY at DESC, batch DESC, idx DESC LIMIT ?`), sink, limit)
	if err != nil {
		return nil, fmt.Errorf("event log: attempts of sink %s: %w", sink, err)
	}
	return scanAttempts(rows)
}

// Outcomes counts the attempts made since a time, per sink and outcome
// (delivered, retried, dead_lettered): the rates the console shows.
func (s *Store) Outcomes(ctx context.Context, since time.Time) (map[string]map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT sink, outcome, COUNT(*) FROM attempts WHERE at >= ? GROUP BY sink, outcome`), micros(since))
	if err != nil {
		return nil, fmt.Errorf("event log: outcomes: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]int64{}
	for rows.Next() {
		var sink, outcome string
		var n int64
		if err := rows.Scan(&sink, &outcome, &n); err != nil {
			return nil, fmt.Errorf("event log: read outcomes: %w", err)
		}
		if out[sink] == nil {
			out[sink] = map[string]int64{}
		}
		out[sink][outcome] = n
	}
	return out, rows.Err()
}

const attemptColumns = `batch, idx, event_id, sink, attempt, outcome, status, duration_us, error, response, node, at`

func scanAttempts(rows *sql.Rows) ([]Attempt, error) {
	defer rows.Close()
	var out []Attempt
	for rows.Next() {
		var a Attempt
		var batch, dur, at int64
		if err := rows.Scan(&batch, &a.Index, &a.EventID, &a.Sink, &a.Number, &a.Outcome, &a.Status, &dur, &a.Error, &a.Response, &a.Node, &at); err != nil {
			return nil, fmt.Errorf("event log: read attempt: %w", err)
		}
		a.Batch, a.Duration, a.At = uint64(batch), time.Duration(dur)*time.Microsecond, fromMicros(at)
		out = append(out, a)
	}
	return out, rows.Err()
}

// addDeliveries fills in each event's deliveries from its attempts, with
// one query for the whole page.
func (s *Store) addDeliveries(ctx context.Context, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	ids := make([]any, len(events))
	byID := make(map[string]*Event, len(events))
	for i := range events {
		ids[i] = events[i].ID
		byID[events[i].ID] = &events[i]
	}
	q := s.rebind(`SELECT event_id, sink, outcome FROM attempts WHERE event_id IN (?` + strings.Repeat(", ?", len(ids)-1) + `) ORDER BY at, batch, idx`)
	rows, err := s.db.QueryContext(ctx, q, ids...)
	if err != nil {
		return fmt.Errorf("event log: deliveries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a Attempt
		if err := rows.Scan(&a.EventID, &a.Sink, &a.Outcome); err != nil {
			return fmt.Errorf("event log: read delivery: %w", err)
		}
		e := byID[a.EventID]
		if e.Deliveries == nil {
			e.Deliveries = map[string]Delivery{}
		}
		e.Deliveries[a.Sink] = next(e.Deliveries[a.Sink], a.Outcome)
	}
	return rows.Err()
}

// deliveries sums attempts, oldest first, into a state per sink.
func deliveries(attempts []Attempt) map[string]Delivery {
	if len(attempts) == 0 {
		return nil
	}
	out := map[string]Delivery{}
	for _, a := range attempts {
		out[a.Sink] = next(out[a.Sink], a.Outcome)
	}
	return out
}

// next is a sink's delivery state after one more attempt with outcome.
// The outcomes are the delivery loop's (delivered, retried, dead_lettered);
// a redelivery after a crash may log one after a success, which changes
// nothing: once delivered, an event stays delivered.
func next(d Delivery, outcome string) Delivery {
	d.Attempts++
	switch {
	case d.State == Delivered:
	case outcome == Delivered || outcome == DeadLettered:
		d.State = outcome
	default:
		d.State = Pending
	}
	return d
}

const eventColumns = `id, event_type, source, node, event_time, event_key, level, state, start_id,
	description, account, domain, user_name, resource_id, resource_type, data, archived, trace_id`

func scanEvents(rows *sql.Rows) ([]Event, error) {
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var (
			e            Event
			at           int64
			level, state string
			data         string
		)
		if err := rows.Scan(&e.ID, &e.Type, &e.Source, &e.Node, &at, &e.Key, &level, &state, &e.StartID,
			&e.Description, &e.Account, &e.Domain, &e.User, &e.ResourceID, &e.ResourceType, &data, &e.Archived, &e.TraceID); err != nil {
			return nil, fmt.Errorf("event log: read event: %w", err)
		}
		e.Time, e.Level, e.State = fromMicros(at), event.Level(level), event.State(state)
		if data != "" {
			e.Data = json.RawMessage(data)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("event log: read events: %w", err)
	}
	return out, nil
}

// conds collects AND-ed conditions and their arguments.
type conds struct {
	parts []string
	args  []any
}

func (c *conds) add(cond string, args ...any) {
	c.parts = append(c.parts, cond)
	c.args = append(c.args, args...)
}

func (c *conds) eq(column, value string) {
	if value != "" {
		c.add(column+" = ?", value)
	}
}

// typeGlob matches the type: by equality when the glob has no wildcard,
// so the (event_type, event_time) index serves it.
func (c *conds) typeGlob(glob string) {
	switch {
	case glob == "":
	case !strings.ContainsAny(glob, "*?"):
		c.add("event_type = ?", glob)
	default:
		c.add(`event_type LIKE ? ESCAPE '\'`, globToLike(glob))
	}
}

func (c *conds) timeRange(start, end time.Time) {
	if !start.IsZero() {
		c.add("event_time >= ?", micros(start))
	}
	if !end.IsZero() {
		c.add("event_time <= ?", micros(end))
	}
}

func (c *conds) sql() string {
	if len(c.parts) == 0 {
		return "TRUE"
	}
	return strings.Join(c.parts, " AND ")
}

// globToLike turns a type glob into a LIKE pattern with \ as the escape.
func globToLike(glob string) string {
	var b strings.Builder
	for _, r := range glob {
		switch r {
		case '*':
			b.WriteByte('%')
		case '?':
			b.WriteByte('_')
		case '%', '_', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func escapeLike(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

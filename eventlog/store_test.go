package eventlog_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/eventlog"
	"github.com/courierhq/courier/internal/testutil"
)

// backends runs fn against a SQLite file and against the real PostgreSQL:
// the two must answer every query alike.
func backends(t *testing.T, fn func(t *testing.T, s *eventlog.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, openSQLite(t, t.TempDir()))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		s, err := eventlog.Open(context.Background(), testutil.PostgresSchema(t), "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		fn(t, s)
	})
}

func openSQLite(t *testing.T, dir string) *eventlog.Store {
	t.Helper()
	s, err := eventlog.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var base = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

// cloudstack is a small log in CloudStack's shape: one volume job in four
// states, a failed VM start, a login, of two accounts.
func cloudstack() []event.Envelope {
	return []event.Envelope{
		{ID: "e1", Type: "VOLUME.CREATE", State: event.StateCreated, Level: event.LevelInfo, Time: base,
			Description: "Successfully created entity for creating volume. Volume Id: 3", Account: "acme", Domain: "ROOT", User: "admin", ResourceID: "3", ResourceType: "Volume"},
		{ID: "e2", Type: "VOLUME.CREATE", State: event.StateScheduled, Level: event.LevelInfo, Time: base.Add(time.Minute), StartID: "e1",
			Description: "Scheduled async job for creating volume: vol1", Account: "acme", Domain: "ROOT", ResourceID: "3", ResourceType: "Volume"},
		{ID: "e3", Type: "VOLUME.CREATE", State: event.StateStarted, Level: event.LevelInfo, Time: base.Add(2 * time.Minute), StartID: "e1",
			Description: "Starting job for creating volume. Volume Id: 3", Account: "acme", Domain: "ROOT", ResourceID: "3", ResourceType: "Volume"},
		{ID: "e4", Type: "VOLUME.CREATE", State: event.StateCompleted, Level: event.LevelInfo, Time: base.Add(3 * time.Minute), StartID: "e1",
			Description: "Successfully completed creating volume. Volume Id: 3", Account: "acme", Domain: "ROOT", ResourceID: "3", ResourceType: "Volume"},
		{ID: "e5", Type: "VM.START", State: event.StateCompleted, Level: event.LevelError, Time: base.Add(24 * time.Hour),
			Description: "Error while starting VM", Account: "globex", Domain: "ROOT/sales", ResourceID: "vm-7", ResourceType: "VirtualMachine",
			Data: json.RawMessage(`{"reason":"InsufficientCapacity"}`)},
		{ID: "e6", Type: "USER.LOGIN", Level: event.LevelInfo, Time: base.Add(48 * time.Hour), Account: "globex", Domain: "ROOT/sales", User: "bob"},
	}
}

func seed(t *testing.T, s *eventlog.Store) {
	t.Helper()
	n, err := s.AddEvents(context.Background(), cloudstack())
	if err != nil || n != 6 {
		t.Fatalf("AddEvents = %d, %v", n, err)
	}
}

func ids(t *testing.T, s *eventlog.Store, f eventlog.Filter) []string {
	t.Helper()
	es, err := s.List(context.Background(), f)
	if err != nil {
		t.Fatalf("List(%+v): %v", f, err)
	}
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func TestListFilters(t *testing.T) {
	backends(t, func(t *testing.T, s *eventlog.Store) {
		seed(t, s)
		for _, c := range []struct {
			name string
			f    eventlog.Filter
			want []string
		}{
			{"all, newest first", eventlog.Filter{}, []string{"e6", "e5", "e4", "e3", "e2", "e1"}},
			{"type exact", eventlog.Filter{Type: "VM.START"}, []string{"e5"}},
			{"type glob", eventlog.Filter{Type: "VOLUME.*"}, []string{"e4", "e3", "e2", "e1"}},
			{"type glob is case-sensitive", eventlog.Filter{Type: "volume.*"}, []string{}},
			{"type glob with ?", eventlog.Filter{Type: "VM.STAR?"}, []string{"e5"}},
			{"level", eventlog.Filter{Level: event.LevelError}, []string{"e5"}},
			{"state", eventlog.Filter{State: event.StateCompleted}, []string{"e5", "e4"}},
			{"account", eventlog.Filter{Account: "globex"}, []string{"e6", "e5"}},
			{"domain", eventlog.Filter{Domain: "ROOT"}, []string{"e4", "e3", "e2", "e1"}},
			{"resource id", eventlog.Filter{ResourceID: "vm-7"}, []string{"e5"}},
			{"start date", eventlog.Filter{Start: base.Add(24 * time.Hour)}, []string{"e6", "e5"}},
			{"end date inclusive", eventlog.Filter{End: base.Add(time.Minute)}, []string{"e2", "e1"}},
			{"date range", eventlog.Filter{Start: base.Add(time.Minute), End: base.Add(3 * time.Minute)}, []string{"e4", "e3", "e2"}},
			{"combined", eventlog.Filter{Type: "VOLUME.*", State: event.StateCompleted, Account: "acme", Start: base}, []string{"e4"}},
			{"combined, nothing", eventlog.Filter{Type: "VOLUME.*", Account: "globex"}, []string{}},
		} {
			if got := ids(t, s, c.f); !slices.Equal(got, c.want) {
				t.Errorf("%s: got %v, want %v", c.name, got, c.want)
			}
		}
	})
}

func TestStartIDFamilyAndKeyword(t *testing.T) {
	backends(t, func(t *testing.T, s *eventlog.Store) {
		seed(t, s)
		if got := ids(t, s, eventlog.Filter{StartID: "e1"}); !slices.Equal(got, []string{"e4", "e3", "e2", "e1"}) {
			t.Errorf("start id e1: %v, want the parent and its three linked states", got)
		}
		if got := ids(t, s, eventlog.Filter{StartID: "e5"}); !slices.Equal(got, []string{"e5"}) {
			t.Errorf("start id of a lone event: %v", got)
		}
		for kw, want := range map[string][]string{
			"completed":            {"e4"}, // description, any case
			"insufficientcapacity": {"e5"}, // data
			"login":                {"e6"}, // type
			"100%":                 {},     // % is literal
			"vol_":                 {},     // _ is literal
			"volume":               {"e4", "e3", "e2", "e1"},
		} {
			if got := ids(t, s, eventlog.Filter{Keyword: kw}); !slices.Equal(got, want) {
				t.Errorf("keyword %q: %v, want %v", kw, got, want)
			}
		}
	})
}

func TestPaging(t *testing.T) {
	backends(t, func(t *testing.T, s *eventlog.Store) {
		seed(t, s)
		var all []string
		for page := 1; page <= 4; page++ {
			all = append(all, ids(t, s, eventlog.Filter{Page: page, PageSize: 4})...)
		}
		if !slices.Equal(all, []string{"e6", "e5", "e4", "e3", "e2", "e1"}) {
			t.Errorf("pages of 4: %v", all)
		}
		if got := ids(t, s, eventlog.Filter{Page: 2, PageSize: 4}); len(got) != 2 {
			t.Errorf("page 2 of 4: %v", got)
		}
	})
}

func TestBadFilters(t *testing.T) {
	s := openSQLite(t, t.TempDir())
	for _, f := range []eventlog.Filter{
		{Level: "DEBUG"},
		{State: "Done"},
		{Start: base, End: base.Add(-time.Second)},
		{Page: -1},
		{PageSize: eventlog.MaxPageSize + 1},
	} {
		if _, err := s.List(context.Background(), f); !errors.Is(err, eventlog.ErrBadFilter) {
			t.Errorf("List(%+v) = %v, want ErrBadFilter", f, err)
		}
	}
}

func TestAddIsIdempotent(t *testing.T) {
	backends(t, func(t *testing.T, s *eventlog.Store) {
		seed(t, s)
		// Read again after a crash: nothing logged twice, nothing changed.
		again := cloudstack()
		again[0].Description = "changed"
		if n, err := s.AddEvents(context.Background(), again); err != nil || n != 0 {
			t.Fatalf("AddEvents again = %d, %v; want 0 new", n, err)
		}
		e, _, err := s.Get(context.Background(), "e1", "")
		if err != nil || e.Description == "changed" {
			t.Fatalf("Get e1 = %+v, %v", e, err)
		}
		as := []eventlog.Attempt{{Batch: 7, Index: 0, Attempt: event.Attempt{EventID: "e1", Sink: "hook", Number: 1, Outcome: "retried", At: base}}}
		for range 2 {
			if _, err := s.AddAttempts(context.Background(), as); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Attempts(context.Background(), "e1")
		if err != nil || len(got) != 1 {
			t.Fatalf("attempts after logging one batch twice: %v, %v", got, err)
		}
	})
}

func TestShowWithAttemptsAndDeliveries(t *testing.T) {
	backends(t, func(t *testing.T, s *eventlog.Store) {
		seed(t, s)
		as := []eventlog.Attempt{
			{Batch: 1, Index: 0, Attempt: event.Attempt{EventID: "e5", Sink: "hook", Number: 1, Outcome: "retried", Status: 503, Error: "503 Service Unavailable", Response: "busy", Node: "a", At: base.Add(time.Second), Duration: 3 * time.Millisecond}},
			{Batch: 1, Index: 1, Attempt: event.Attempt{EventID: "e5", Sink: "bus", Number: 1, Outcome: "dead_lettered", Status: 400, Node: "a", At: base.Add(2 * time.Second)}},
			{Batch: 2, Index: 0, Attempt: event.Attempt{EventID: "e5", Sink: "hook", Number: 2, Outcome: "delivered", Status: 200, Node: "b", At: base.Add(3 * time.Second)}},
			{Batch: 2, Index: 1, Attempt: event.Attempt{EventID: "e4", Sink: "hook", Number: 1, Outcome: "retried", Node: "b", At: base.Add(4 * time.Second)}},
		}
		if n, err := s.AddAttempts(context.Background(), as); err != nil || n != 4 {
			t.Fatalf("AddAttempts = %d, %v", n, err)
		}
		e, got, err := s.Get(context.Background(), "e5", "")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || got[0].Node != "a" || got[2].Node != "b" || got[0].Response != "busy" || got[0].Duration != 3*time.Millisecond {
			t.Errorf("attempts of e5: %+v", got)
		}
		want := map[string]eventlog.Delivery{"hook": {State: "delivered", Attempts: 2}, "bus": {State: "dead_lettered", Attempts: 1}}
		if fmt.Sprint(e.Deliveries) != fmt.Sprint(want) {
			t.Errorf("deliveries of e5: %v, want %v", e.Deliveries, want)
		}
		if string(e.Data) != `{"reason":"InsufficientCapacity"}` || e.ResourceType != "VirtualMachine" || e.Level != event.LevelError {
			t.Errorf("e5 read back as %+v", e.Envelope)
		}
		list, err := s.List(context.Background(), eventlog.Filter{Type: "VOLUME.*", State: event.StateCompleted})
		if err != nil || len(list) != 1 || list[0].Deliveries["hook"] != (eventlog.Delivery{State: "pending", Attempts: 1}) {
			t.Errorf("list deliveries of e4: %+v, %v", list, err)
		}
		if _, _, err := s.Get(context.Background(), "nope", ""); !errors.Is(err, eventlog.ErrNotFound) {
			t.Errorf("Get of a missing id: %v", err)
		}
	})
}

func TestArchiveAndDelete(t *testing.T) {
	backends(t, func(t *testing.T, s *eventlog.Store) {
		ctx := context.Background()
		seed(t, s)
		if _, err := s.AddAttempts(ctx, []eventlog.Attempt{{Batch: 1, Index: 0, Attempt: event.Attempt{EventID: "e2", Sink: "hook", Number: 1, Outcome: "delivered", At: base}}}); err != nil {
			t.Fatal(err)
		}
		// Archive by type up to a date: hidden from the list, shown with
		// Archived, still there for Get.
		n, err := s.Archive(ctx, eventlog.Selection{Type: "VOLUME.*", End: base.Add(time.Minute)})
		if err != nil || n != 2 {
			t.Fatalf("Archive = %d, %v; want 2", n, err)
		}
		if got := ids(t, s, eventlog.Filter{}); !slices.Equal(got, []string{"e6", "e5", "e4", "e3"}) {
			t.Errorf("list after archive: %v", got)
		}
		if got := ids(t, s, eventlog.Filter{Archived: true}); !slices.Equal(got, []string{"e2", "e1"}) {
			t.Errorf("archived list: %v", got)
		}
		if e, _, err := s.Get(ctx, "e1", ""); err != nil || !e.Archived {
			t.Errorf("Get archived e1: %+v, %v", e, err)
		}
		// Delete by ids: gone, attempts too.
		if n, err := s.Delete(ctx, eventlog.Selection{IDs: []string{"e2", "e6"}}); err != nil || n != 2 {
			t.Fatalf("Delete = %d, %v", n, err)
		}
		if _, _, err := s.Get(ctx, "e2", ""); !errors.Is(err, eventlog.ErrNotFound) {
			t.Errorf("Get deleted e2: %v", err)
		}
		if as, err := s.Attempts(ctx, "e2"); err != nil || len(as) != 0 {
			t.Errorf("attempts of deleted e2: %v, %v", as, err)
		}
		// Delete by a date range, both ends inclusive.
		if n, err := s.Delete(ctx, eventlog.Selection{Start: base.Add(2 * time.Minute), End: base.Add(3 * time.Minute)}); err != nil || n != 2 {
			t.Errorf("Delete by dates = %d, %v; want e3 and e4", n, err)
		}
		// Nothing matches: ErrNotFound, for both.
		if _, err := s.Delete(ctx, eventlog.Selection{Type: "NO.SUCH"}); !errors.Is(err, eventlog.ErrNotFound) {
			t.Errorf("Delete of nothing: %v", err)
		}
		if _, err := s.Archive(ctx, eventlog.Selection{IDs: []string{"nope"}}); !errors.Is(err, eventlog.ErrNotFound) {
			t.Errorf("Archive of nothing: %v", err)
		}
	})
}

func TestSelectionRules(t *testing.T) {
	s := openSQLite(t, t.TempDir())
	for _, sel := range []eventlog.Selection{
		{},                                       // nothing given
		{Start: base},                            // a start date alone
		{Type: "X", Start: base},                 // a start date without an end date
		{Start: base, End: base.Add(-time.Hour)}, // reversed
		{IDs: []string{"e1"}, Type: "X"},         // ids and a type
	} {
		if _, err := s.Archive(context.Background(), sel); !errors.Is(err, eventlog.ErrBadFilter) {
			t.Errorf("Archive(%+v) = %v, want ErrBadFilter", sel, err)
		}
		if _, err := s.Delete(context.Background(), sel); !errors.Is(err, eventlog.ErrBadFilter) {
			t.Errorf("Delete(%+v) = %v, want ErrBadFilter", sel, err)
		}
	}
}

func TestAccountScope(t *testing.T) {
	backends(t, func(t *testing.T, s *eventlog.Store) {
		ctx := context.Background()
		seed(t, s)
		// Another account's event is not found, never forbidden.
		if _, _, err := s.Get(ctx, "e5", "acme"); !errors.Is(err, eventlog.ErrNotFound) {
			t.Errorf("acme reads globex's e5: %v", err)
		}
		if _, _, err := s.Get(ctx, "e1", "acme"); err != nil {
			t.Errorf("acme reads its e1: %v", err)
		}
		if _, err := s.Delete(ctx, eventlog.Selection{IDs: []string{"e5"}, Account: "acme"}); !errors.Is(err, eventlog.ErrNotFound) {
			t.Errorf("acme deletes globex's e5: %v", err)
		}
		if n, err := s.Archive(ctx, eventlog.Selection{End: base.Add(72 * time.Hour), Account: "acme"}); err != nil || n != 4 {
			t.Errorf("acme archives everything up to a date = %d, %v; want its 4", n, err)
		}
		if got := ids(t, s, eventlog.Filter{}); !slices.Equal(got, []string{"e6", "e5"}) {
			t.Errorf("globex's events touched: %v", got)
		}
	})
}

func TestPurge(t *testing.T) {
	backends(t, func(t *testing.T, s *eventlog.Store) {
		ctx := context.Background()
		seed(t, s)
		if _, err := s.AddAttempts(ctx, []eventlog.Attempt{
			{Batch: 1, Index: 0, Attempt: event.Attempt{EventID: "e1", Sink: "hook", Number: 1, Outcome: "delivered", At: base}},
			{Batch: 1, Index: 1, Attempt: event.Attempt{EventID: "gone", Sink: "hook", Number: 1, Outcome: "delivered", At: base}},
			{Batch: 1, Index: 2, Attempt: event.Attempt{EventID: "e6", Sink: "hook", Number: 1, Outcome: "delivered", At: base.Add(48 * time.Hour)}},
		}); err != nil {
			t.Fatal(err)
		}
		n, err := s.Purge(ctx, base.Add(24*time.Hour))
		if err != nil || n != 4 {
			t.Fatalf("Purge = %d, %v; want the 4 events of day one", n, err)
		}
		if got := ids(t, s, eventlog.Filter{}); !slices.Equal(got, []string{"e6", "e5"}) {
			t.Errorf("after purge: %v", got)
		}
		for id, want := range map[string]int{"e1": 0, "gone": 0, "e6": 1} {
			if as, _ := s.Attempts(ctx, id); len(as) != want {
				t.Errorf("attempts of %s after purge: %d, want %d", id, len(as), want)
			}
		}
		if n, err := s.Purge(ctx, base); err != nil || n != 0 {
			t.Errorf("Purge of nothing = %d, %v; want 0 and no error", n, err)
		}
	})
}

func TestSQLiteFileSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := openSQLite(t, dir)
	seed(t, s)
	s.Close()
	s2 := openSQLite(t, dir)
	if got := ids(t, s2, eventlog.Filter{}); len(got) != 6 {
		t.Errorf("after reopen: %v", got)
	}
	if fi, err := os.Stat(filepath.Join(dir, eventlog.FileName)); err != nil || fi.Size() == 0 {
		t.Errorf("no database file: %v", err)
	}
	if n, err := s2.Size(context.Background()); err != nil || n == 0 {
		t.Errorf("Size = %d, %v", n, err)
	}
}

func TestBadURL(t *testing.T) {
	_, err := eventlog.Open(context.Background(), "mysql://root:secret@db/x", t.TempDir())
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("Open with a mysql url: %v (must fail without the password)", err)
	}
}

// TestAddManyInChunks writes more rows than one INSERT carries, twice: all
// are logged once, the prepared full-chunk statement and the last partial
// one alike.
func TestAddManyInChunks(t *testing.T) {
	backends(t, func(t *testing.T, s *eventlog.Store) {
		ctx := context.Background()
		es := make([]event.Envelope, 250)
		as := make([]eventlog.Attempt, 250)
		for i := range es {
			es[i] = event.Envelope{ID: fmt.Sprintf("bulk-%03d", i), Type: "VM.START", Time: base.Add(time.Duration(i) * time.Second)}
			as[i] = eventlog.Attempt{Batch: 9, Index: i, Attempt: event.Attempt{EventID: es[i].ID, Sink: "hook", Number: 1, Outcome: "delivered", At: base}}
		}
		for round, want := range []int{250, 0} {
			if n, err := s.AddEvents(ctx, es); err != nil || n != want {
				t.Fatalf("round %d: AddEvents = %d, %v; want %d", round, n, err, want)
			}
			if n, err := s.AddAttempts(ctx, as); err != nil || n != want {
				t.Fatalf("round %d: AddAttempts = %d, %v; want %d", round, n, err, want)
			}
		}
		list, err := s.List(ctx, eventlog.Filter{Type: "VM.START", PageSize: 1000})
		if err != nil || len(list) != 250 || list[0].ID != "bulk-249" || list[0].Deliveries["hook"].State != "delivered" {
			t.Fatalf("listed %d, %v", len(list), err)
		}
	})
}

func TestSinkAttemptsAndOutcomes(t *testing.T) {
	backends(t, func(t *testing.T, s *eventlog.Store) {
		ctx := context.Background()
		var as []eventlog.Attempt
		for i := range 5 {
			as = append(as, eventlog.Attempt{Batch: 1, Index: i, Attempt: event.Attempt{EventID: fmt.Sprint("h", i), Sink: "hook", Number: 1, Outcome: "delivered", Status: 200, At: base.Add(time.Duration(i) * time.Second)}})
		}
		as = append(as,
			eventlog.Attempt{Batch: 2, Index: 0, Attempt: event.Attempt{EventID: "b0", Sink: "bus", Number: 1, Outcome: "retried", At: base.Add(10 * time.Second)}},
			eventlog.Attempt{Batch: 2, Index: 1, Attempt: event.Attempt{EventID: "b0", Sink: "bus", Number: 2, Outcome: "dead_lettered", At: base.Add(11 * time.Second)}},
			eventlog.Attempt{Batch: 2, Index: 2, Attempt: event.Attempt{EventID: "old", Sink: "bus", Number: 1, Outcome: "retried", At: base.Add(-time.Hour)}},
		)
		if _, err := s.AddAttempts(ctx, as); err != nil {
			t.Fatal(err)
		}
		got, err := s.SinkAttempts(ctx, "hook", 3)
		if err != nil {
			t.Fatal(err)
		}
		var order []string
		for _, a := range got {
			order = append(order, a.EventID)
		}
		if want := []string{"h4", "h3", "h2"}; !slices.Equal(order, want) {
			t.Errorf("latest attempts of hook: %v, want %v", order, want)
		}
		out, err := s.Outcomes(ctx, base)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]map[string]int64{"hook": {"delivered": 5}, "bus": {"retried": 1, "dead_lettered": 1}}
		if fmt.Sprint(out) != fmt.Sprint(want) {
			t.Errorf("outcomes since base: %v, want %v", out, want)
		}
	})
}

func TestTraceIDKept(t *testing.T) {
	backends(t, func(t *testing.T, s *eventlog.Store) {
		ctx := context.Background()
		evs := cloudstack()[:2]
		if _, err := s.AddTracedEvents(ctx, evs, []string{"4bf92f3577b34da6a3ce929d0e0e4736"}); err != nil {
			t.Fatal(err)
		}
		e1, _, err := s.Get(ctx, "e1", "")
		if err != nil || e1.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("e1: trace %q, %v", e1.TraceID, err)
		}
		e2, _, err := s.Get(ctx, "e2", "")
		if err != nil || e2.TraceID != "" {
			t.Errorf("e2 (no trace given): trace %q, %v", e2.TraceID, err)
		}
	})
}

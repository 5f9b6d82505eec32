package spool_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/spool"
)

func open(t *testing.T) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// newEvents returns n complete events with UUIDv7 ids, in the order they
// were made.
func newEvents(t testing.TB, n int) []event.Envelope {
	t.Helper()
	es := make([]event.Envelope, n)
	for i := range es {
		id, err := event.NewID()
		if err != nil {
			t.Fatal(err)
		}
		es[i] = event.Envelope{ID: id, Type: "VOLUME_CREATE", Key: fmt.Sprintf("gv%d", i), Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
		if err := es[i].Complete("node-a"); err != nil {
			t.Fatal(err)
		}
	}
	return es
}

func put(t testing.TB, sp *spool.Spool, es ...event.Envelope) {
	t.Helper()
	for _, e := range es {
		if err := sp.Put(e); err != nil {
			t.Fatalf("put %s: %v", e.ID, err)
		}
	}
}

func length(t testing.TB, sp *spool.Spool) int {
	t.Helper()
	n, err := sp.Len()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func ids(es []event.Envelope) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// recorder is an emit function that keeps what it was given.
type recorder struct {
	mu   sync.Mutex
	got  []event.Envelope
	fail func(e event.Envelope) error
}

func (r *recorder) emit(_ context.Context, e event.Envelope) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		if err := r.fail(e); err != nil {
			return err
		}
	}
	r.got = append(r.got, e)
	return nil
}

func TestOpenCreatesAPrivateDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "courier", "spool")
	sp, err := spool.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Errorf("spool directory mode = %o, want 700", perm)
	}
	if sp.Dir() != dir || length(t, sp) != 0 {
		t.Errorf("Dir() = %s, Len() = %d; want %s and 0", sp.Dir(), length(t, sp), dir)
	}
	if _, err := spool.Open(""); err == nil {
		t.Error("Open(\"\") succeeded; want an error")
	}
}

func TestFlushSendsInEmitOrderAndEmptiesTheSpool(t *testing.T) {
	sp := open(t)
	es := newEvents(t, 20)
	shuffled := slices.Clone(es)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	put(t, sp, shuffled...)
	if n := length(t, sp); n != 20 {
		t.Fatalf("Len = %d after 20 puts", n)
	}
	files, _ := filepath.Glob(filepath.Join(sp.Dir(), "*.json"))
	for _, f := range files {
		if info, err := os.Stat(f); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("spool file %s: mode %v, err %v; want 0600", f, info.Mode().Perm(), err)
		}
	}

	var r recorder
	n, err := sp.Flush(context.Background(), r.emit)
	if err != nil || n != 20 {
		t.Fatalf("Flush = %d, %v; want 20, nil", n, err)
	}
	if !slices.Equal(ids(r.got), ids(es)) {
		t.Errorf("sent in order %v, want the emit order %v", ids(r.got), ids(es))
	}
	for i, e := range r.got {
		if !e.Time.Equal(es[i].Time) || string(e.Data) != string(es[i].Data) || e.Key != es[i].Key || e.Node != "node-a" {
			t.Errorf("event %s came back as %+v, want %+v", e.ID, e, es[i])
		}
	}
	if n := length(t, sp); n != 0 {
		t.Errorf("Len = %d after a full flush, want 0", n)
	}
	left, _ := os.ReadDir(sp.Dir())
	if len(left) != 0 {
		t.Errorf("spool directory still holds %v", left)
	}
}

func TestFlushStopsAtTheFirstFailureAndKeepsTheRest(t *testing.T) {
	sp := open(t)
	es := newEvents(t, 5)
	put(t, sp, es...)
	down := errors.New("outbox down")
	r := recorder{fail: func(e event.Envelope) error {
		if e.ID == es[2].ID {
			return down
		}
		return nil
	}}
	n, err := sp.Flush(context.Background(), r.emit)
	if n != 2 || !errors.Is(err, down) {
		t.Fatalf("Flush = %d, %v; want 2 and the emit error", n, err)
	}
	if !strings.Contains(err.Error(), es[2].ID) || !strings.Contains(err.Error(), sp.Dir()) {
		t.Errorf("error %q should name the event and the spool", err)
	}
	if n := length(t, sp); n != 3 {
		t.Fatalf("Len = %d after the failure, want 3 kept", n)
	}

	r = recorder{}
	n, err = sp.Flush(context.Background(), r.emit)
	if err != nil || n != 3 || !slices.Equal(ids(r.got), ids(es[2:])) {
		t.Fatalf("second Flush = %d, %v, sent %v; want the 3 left, from the one that failed", n, err, ids(r.got))
	}
}

func TestFlushMovesFilesThatAreNotEventsToBad(t *testing.T) {
	sp := open(t)
	es := newEvents(t, 3)
	put(t, sp, es...)
	garbage := []byte("{\"id\": \"half an ev")
	if err := os.WriteFile(filepath.Join(sp.Dir(), "broken.json"), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	// A valid event under another id's name: replacing by id relies on the
	// name, so this is refused too.
	misnamed, _ := json.Marshal(es[0])
	if err := os.WriteFile(filepath.Join(sp.Dir(), "other-id.json"), misnamed, 0o600); err != nil {
		t.Fatal(err)
	}

	var r recorder
	n, err := sp.Flush(context.Background(), r.emit)
	if n != 3 || !slices.Equal(ids(r.got), ids(es)) {
		t.Errorf("Flush sent %d (%v), want the 3 good events", n, ids(r.got))
	}
	if !errors.Is(err, spool.ErrBadFile) {
		t.Fatalf("Flush error = %v, want ErrBadFile", err)
	}
	for _, name := range []string{"broken.json", "other-id.json"} {
		if !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), filepath.Join(sp.Dir(), "bad", name)) {
			t.Errorf("error %q should name %s and where it went", err, name)
		}
	}
	kept, rerr := os.ReadFile(filepath.Join(sp.Dir(), "bad", "broken.json"))
	if rerr != nil || string(kept) != string(garbage) {
		t.Errorf("bad/broken.json = %q, %v; want the file unchanged", kept, rerr)
	}
	if n := length(t, sp); n != 0 {
		t.Errorf("Len = %d, want 0: bad files are not waiting events", n)
	}

	// A second bad file of the same name does not overwrite the first.
	if err := os.WriteFile(filepath.Join(sp.Dir(), "broken.json"), []byte("again"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Flush(context.Background(), r.emit); !errors.Is(err, spool.ErrBadFile) {
		t.Fatalf("Flush error = %v, want ErrBadFile", err)
	}
	bad, _ := filepath.Glob(filepath.Join(sp.Dir(), "bad", "broken.json*"))
	if len(bad) != 2 {
		t.Errorf("bad/ holds %v, want both broken files", bad)
	}
}

func TestFlushMovesEventsTheOutboxRejectsToBadAndGoesOn(t *testing.T) {
	sp := open(t)
	es := newEvents(t, 3)
	put(t, sp, es...)
	r := recorder{fail: func(e event.Envelope) error {
		if e.ID == es[0].ID {
			return fmt.Errorf("%w: %w", spool.ErrRejected, outbox.ErrTooLarge)
		}
		return nil
	}}
	n, err := sp.Flush(context.Background(), r.emit)
	if n != 2 || !slices.Equal(ids(r.got), ids(es[1:])) {
		t.Errorf("Flush sent %d (%v), want the 2 others", n, ids(r.got))
	}
	if !errors.Is(err, spool.ErrBadFile) || !strings.Contains(err.Error(), "event too large") {
		t.Errorf("Flush error = %v, want ErrBadFile with the reason", err)
	}
	if _, err := os.Stat(filepath.Join(sp.Dir(), "bad", es[0].ID+".json")); err != nil {
		t.Errorf("rejected event not kept in bad/: %v", err)
	}
}

func TestPutReplacesAnEventWithTheSameID(t *testing.T) {
	sp := open(t)
	e := newEvents(t, 1)[0]
	put(t, sp, e)
	e.Data = json.RawMessage(`{"second":true}`)
	put(t, sp, e)
	if n := length(t, sp); n != 1 {
		t.Fatalf("Len = %d after putting one id twice, want 1", n)
	}
	var r recorder
	if _, err := sp.Flush(context.Background(), r.emit); err != nil {
		t.Fatal(err)
	}
	if len(r.got) != 1 || string(r.got[0].Data) != `{"second":true}` {
		t.Errorf("flushed %+v, want the second version only", r.got)
	}
}

func TestPutRefusesAnInvalidEventAndLeavesNothing(t *testing.T) {
	sp := open(t)
	for _, e := range []event.Envelope{
		{Type: "T", Time: time.Now()},            // no id
		{ID: "a", Time: time.Now()},              // no type
		{ID: "a/b", Type: "T", Time: time.Now()}, // not a file name
		{ID: "a", Type: "T"},                     // no time
		{ID: "a", Type: "T", Time: time.Now(), Data: json.RawMessage("{")},
	} {
		if err := sp.Put(e); !errors.Is(err, event.ErrInvalid) {
			t.Errorf("Put(%+v) = %v, want ErrInvalid", e, err)
		}
	}
	left, _ := os.ReadDir(sp.Dir())
	if len(left) != 0 {
		t.Errorf("refused puts left %v behind", left)
	}
}

func TestLenIgnoresTemporaryFilesAndFlushRemovesStaleOnes(t *testing.T) {
	sp := open(t)
	put(t, sp, newEvents(t, 1)...)
	fresh := filepath.Join(sp.Dir(), ".put-123.tmp")
	stale := filepath.Join(sp.Dir(), ".put-456.tmp")
	for _, f := range []string{fresh, stale} {
		if err := os.WriteFile(f, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if n := length(t, sp); n != 1 {
		t.Fatalf("Len = %d, want 1: temporary files are no events", n)
	}
	var r recorder
	if n, err := sp.Flush(context.Background(), r.emit); n != 1 || err != nil {
		t.Fatalf("Flush = %d, %v; want 1, nil", n, err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("a temporary file an hour old was not removed: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a fresh temporary file (a Put in progress) was removed: %v", err)
	}
}

func TestFlushTakesAFileThatVanishedAsSentByAnotherFlusher(t *testing.T) {
	sp := open(t)
	es := newEvents(t, 4)
	put(t, sp, es...)
	// While event 0 is being sent, another flusher takes events 0 (after
	// sending it too) and 1.
	r := recorder{fail: func(e event.Envelope) error {
		if e.ID == es[0].ID {
			for _, other := range es[:2] {
				if err := os.Remove(filepath.Join(sp.Dir(), other.ID+".json")); err != nil {
					t.Error(err)
				}
			}
		}
		return nil
	}}
	n, err := sp.Flush(context.Background(), r.emit)
	if err != nil {
		t.Fatalf("Flush: %v; a vanished file is not an error", err)
	}
	if want := []string{es[0].ID, es[2].ID, es[3].ID}; !slices.Equal(ids(r.got), want) || n != 3 {
		t.Errorf("sent %v (%d), want %v", ids(r.got), n, want)
	}
}

func TestFlushStopsWhenTheContextEnds(t *testing.T) {
	sp := open(t)
	put(t, sp, newEvents(t, 3)...)
	ctx, cancel := context.WithCancel(context.Background())
	r := recorder{fail: func(event.Envelope) error { cancel(); return nil }}
	n, err := sp.Flush(ctx, r.emit)
	if n != 1 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Flush = %d, %v; want 1 and context.Canceled", n, err)
	}
	if n := length(t, sp); n != 2 {
		t.Errorf("Len = %d, want the 2 not sent", n)
	}
}

func TestConcurrentFlushersStoreEachEventOnce(t *testing.T) {
	srv, js := testutil.StartOutbox(t, outbox.Limits{})
	if _, err := outbox.EnsureConsumer(context.Background(), js, "probe", time.Minute, 100000); err != nil {
		t.Fatal(err)
	}
	sp := open(t)
	es := newEvents(t, 300)
	put(t, sp, es...)

	// Four flushers on one directory, as the worker and emit runs would be,
	// each with a publisher (connection) of its own.
	const flushers = 4
	var wg sync.WaitGroup
	sent := make([]int, flushers)
	errs := make([]error, flushers)
	for i := range flushers {
		pub, err := outbox.Dial(context.Background(), srv.ClientURL(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pub.Close)
		other, err := spool.Open(sp.Dir()) // another process would open it anew
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent[i], errs[i] = outbox.FlushSpool(context.Background(), pub, other)
		}()
	}
	wg.Wait()
	total := 0
	for i := range flushers {
		if errs[i] != nil {
			t.Errorf("flusher %d: %v", i, errs[i])
		}
		total += sent[i]
	}
	if total < len(es) {
		t.Errorf("flushers sent %d events in all, want at least %d", total, len(es))
	}
	t.Logf("%d sends for %d events (the outbox de-duplicates the rest)", total, len(es))
	if n := length(t, sp); n != 0 {
		t.Errorf("Len = %d after the flushers finished, want 0", n)
	}
	got := testutil.StoredIDs(t, js)
	if len(got) != len(es) {
		t.Errorf("outbox holds %d distinct events, want %d", len(got), len(es))
	}
	for _, e := range es {
		if got[e.ID] != 1 {
			t.Errorf("event %s stored %d times, want once", e.ID, got[e.ID])
		}
	}
}

// TestFlushWhileProducersSpoolLosesNothing runs flushers in a loop while a
// producer keeps spooling: the spool needs no lock, since every write is a
// rename and a vanished file means another flusher sent it.
func TestFlushWhileProducersSpoolLosesNothing(t *testing.T) {
	srv, js := testutil.StartOutbox(t, outbox.Limits{})
	if _, err := outbox.EnsureConsumer(context.Background(), js, "probe", time.Minute, 100000); err != nil {
		t.Fatal(err)
	}
	sp := open(t)
	es := newEvents(t, 200)
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		pub, err := outbox.Dial(context.Background(), srv.ClientURL(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pub.Close)
		other, err := spool.Open(sp.Dir())
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, err := outbox.FlushSpool(context.Background(), pub, other); err != nil {
					errs[i] = err
					return
				}
				select {
				case <-done:
					return
				default:
				}
			}
		}()
	}
	put(t, sp, es...)
	close(done)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("flusher %d: %v", i, err)
		}
	}
	// What the loops had not reached yet goes out with one last flush.
	pub, err := outbox.Dial(context.Background(), srv.ClientURL(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if _, err := outbox.FlushSpool(context.Background(), pub, sp); err != nil {
		t.Fatal(err)
	}
	if n := length(t, sp); n != 0 {
		t.Errorf("Len = %d, want 0", n)
	}
	got := testutil.StoredIDs(t, js)
	for _, e := range es {
		if got[e.ID] != 1 {
			t.Errorf("event %s stored %d times, want once", e.ID, got[e.ID])
		}
	}
}

package worker_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/retry"
	"github.com/courierhq/courier/sinks/builtin"
	"github.com/courierhq/courier/sinks/handler"
	"github.com/courierhq/courier/worker"
)

// A program's own function as a sink (type: handler) gets what every sink
// gets: retries of a failed call, a dead letter for a permanent failure,
// each key's events in emit order, and the event stored before emit
// returns.
func TestHandlerSinkRetriesDeadLettersAndKeepsKeyOrder(t *testing.T) {
	var (
		mu    sync.Mutex
		calls = map[string]int{}
		seen  []string // ids applied, in order
	)
	apply := func(_ context.Context, e event.Envelope) error {
		mu.Lock()
		defer mu.Unlock()
		calls[e.ID]++
		switch {
		case e.Type == "VOLUME_CORRUPT":
			return retry.NewPermanent(errors.New("cannot apply a corrupt volume event"))
		case calls[e.ID] < 3:
			return errors.New("the cache is warming up") // retried
		}
		seen = append(seen, e.ID)
		return nil
	}
	n := testutil.StartNodeOfKinds(t, "node_id: handler-node\nsinks:\n  - name: cache\n    type: handler\n    handler: invalidate-cache\n    ordering: key\n    "+fastRetry+"\n",
		nil, builtin.Kinds(handler.NewKind(handler.Funcs{"invalidate-cache": apply})))
	p := n.Publisher(t)
	const perKey = 5
	for i := range perKey {
		for _, key := range []string{"gv1", "gv2"} {
			emit(t, p, event.Envelope{ID: fmt.Sprintf("%s-%d", key, i), Type: "VOLUME_SET", Key: key})
		}
	}
	bad := emit(t, p, event.Envelope{ID: "corrupt-1", Type: "VOLUME_CORRUPT", Key: "gv3"})

	testutil.Eventually(t, waitFor, func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 2*perKey },
		"every event applied after its retries")
	testutil.Eventually(t, waitFor, func() bool { return len(deadLetters(t, n, "cache")) == 1 }, "the permanent failure dead-lettered")
	if dl := deadLetters(t, n, "cache")[0]; dl.Event.ID != bad || dl.Attempts != 1 {
		t.Errorf("dead letter %s after %d attempts, want %s after 1", dl.Event.ID, dl.Attempts, bad)
	}
	mu.Lock()
	defer mu.Unlock()
	last := map[string]int{}
	for _, id := range seen {
		key, i := id[:3], id[4:]
		seq, _ := strconv.Atoi(i)
		if seq != last[key] {
			t.Errorf("%s applied out of its key's order: %v", id, seen)
			break
		}
		last[key] = seq + 1
		if calls[id] != 3 {
			t.Errorf("%s: %d calls, want 3 (two retried failures, then success)", id, calls[id])
		}
	}
}

// A handler sink whose function the program did not register does not
// start: the worker says which name to register.
func TestHandlerSinkWithoutItsFunction(t *testing.T) {
	cfg, err := config.Parse([]byte("node_id: no-handler\noutbox: {listen: 127.0.0.1:0}\nsinks:\n  - name: cache\n    type: handler\n    handler: invalidate-cache\n"), nil, builtin.Kinds())
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.SpoolDir = filepath.Join(cfg.DataDir, "spool")
	w, err := worker.Start(context.Background(), cfg, "test", testutil.Logger(t))
	if err == nil {
		w.Shutdown(context.Background())
		t.Fatal("the worker started a handler sink with no function")
	}
	if !errors.Is(err, handler.ErrNotRegistered) || !strings.Contains(err.Error(), `handler.NewKind(handler.Funcs{"invalidate-cache": fn})`) {
		t.Errorf("start without the handler: %v, want it to say which name to register", err)
	}
}

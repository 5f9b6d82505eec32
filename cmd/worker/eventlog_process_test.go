package main

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/courierhq/courier/eventlog"
	"github.com/courierhq/courier/internal/testutil"
)

// TestEventLogOfANodeThatWasDownIsComplete runs three worker processes as
// one cluster, stops one, emits 1,000 events through the others, and
// restarts it: with no command run, its own event log gets every event
// and the attempts the other nodes made. Then it is SIGKILLed, and its log
// file holds all of them, each once.
func TestEventLogOfANodeThatWasDownIsComplete(t *testing.T) {
	if testing.Short() {
		t.Skip("three-process cluster test skipped with -short")
	}
	rcv := testutil.NewReceiver(t)
	nodes := writeClusterConfigs(t, rcv.URL())
	for _, n := range nodes {
		n.proc = startWorkerProc(t, n.cfg)
	}
	testutil.Eventually(t, 60*time.Second, func() bool { _, c := streamLeader(t, nodes[0].url); return c == 3 }, "outbox replicated on three nodes")
	n3 := nodes[2]
	// n3 must have run once, its log's consumers created: a log that never
	// existed holds nothing in the outbox.
	var first nodeBeat
	testutil.Eventually(t, 60*time.Second, func() bool {
		first = beatOf(t, nodes[0].cfg, "n3")
		return first.Up && first.EventLogLag != nil
	}, "n3 running with its event log")
	n3.kill(t)

	var em emitter
	em.emit(t, nodes[:2], 1000, "log")
	testutil.Eventually(t, 90*time.Second, func() bool { return len(missing(rcv, em.ids)) == 0 }, "every event delivered while n3 is down: %d missing", len(missing(rcv, em.ids)))

	n3.proc = startWorkerProc(t, n3.cfg)
	// n3's heartbeat reports its log's lag behind the outbox; it reaches
	// 0 once n3 logged everything it missed.
	// The killed n3's last beat still counts as UP for a while: wait for
	// one from the new process.
	testutil.Eventually(t, 90*time.Second, func() bool {
		b := beatOf(t, nodes[0].cfg, "n3")
		return b.Up && !b.Started.Equal(first.Started) && b.EventLogLag != nil && *b.EventLogLag == 0
	}, "restarted n3 up with its event log caught up")
	store := func() *eventlog.Store {
		s, err := eventlog.Open(context.Background(), "", n3.data)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Attempts follow in their own stream: wait until n3 has them all,
	// reading its file beside the running worker (SQLite's WAL allows it).
	s := store()
	testutil.Eventually(t, 60*time.Second, func() bool { return len(withoutDelivery(t, s, em.ids)) == 0 },
		"n3's log has every event with its delivered attempt: %s", lacking(t, s, em.ids))
	s.Close()

	// A SIGKILL loses nothing logged and logs nothing twice.
	n3.kill(t)
	s = store()
	defer s.Close()
	if lacking := withoutDelivery(t, s, em.ids); len(lacking) > 0 {
		t.Fatalf("after SIGKILL, %d events lack their delivery in n3's log: %v", len(lacking), lacking[:min(10, len(lacking))])
	}
	all, err := s.List(context.Background(), eventlog.Filter{PageSize: eventlog.MaxPageSize, Type: "VOLUME_CREATE"})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1000 {
		t.Errorf("n3's log lists %d VOLUME_CREATE events, want exactly 1000", len(all))
	}
}

// nodeBeat is one node of worker status --json.
type nodeBeat struct {
	Node        string    `json:"node"`
	Started     time.Time `json:"started"`
	Up          bool      `json:"up"`
	EventLogLag *int64    `json:"event_log_lag"`
}

// beatOf reads one node's last heartbeat through worker status --json.
func beatOf(t *testing.T, cfg, node string) nodeBeat {
	t.Helper()
	r := cli(t, "status", "--config", cfg, "--json")
	var st struct {
		Nodes []nodeBeat `json:"nodes"`
	}
	if r.err != nil || json.Unmarshal([]byte(r.stdout), &st) != nil {
		return nodeBeat{}
	}
	for _, n := range st.Nodes {
		if n.Node == node {
			return n
		}
	}
	return nodeBeat{}
}

// lacking says, for a failure, how many events are not logged at all and
// how many lack their delivered attempt.
func lacking(t *testing.T, s *eventlog.Store, ids []string) string {
	t.Helper()
	events, attempts := 0, 0
	for _, id := range withoutDelivery(t, s, ids) {
		if _, _, err := s.Get(context.Background(), id, ""); err != nil {
			events++
		} else {
			attempts++
		}
	}
	return fmt.Sprintf("%d events not logged, %d logged without their delivery", events, attempts)
}

// withoutDelivery lists the ids whose logged attempts do not include a
// delivery to the audit sink, or that are not logged at all.
func withoutDelivery(t *testing.T, s *eventlog.Store, ids []string) []string {
	t.Helper()
	var out []string
	for _, id := range ids {
		e, attempts, err := s.Get(context.Background(), id, "")
		if err != nil || e.Deliveries["audit"].State != eventlog.Delivered || len(attempts) == 0 {
			out = append(out, id)
		}
	}
	return out
}

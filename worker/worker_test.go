package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/worker"
)

const waitFor = 20 * time.Second

// fastRetry keeps retry tests short without changing what they exercise.
const fastRetry = `retry: {initial: 20ms, multiplier: 2, max_interval: 200ms, max_attempts: 4, jitter: 0.01}`

func sinkYAML(name, url, extra string) string {
	return fmt.Sprintf("  - name: %s\n    type: webhook\n    url: %s\n    %s\n    %s\n", name, url, fastRetry, extra)
}

func emit(t *testing.T, p *outbox.Publisher, e event.Envelope) string {
	t.Helper()
	id, err := p.Emit(context.Background(), e)
	if err != nil {
		t.Fatalf("emit: %v", err)
	}
	return id
}

func deadLetters(t *testing.T, n *testutil.Node, sink string) []outbox.DeadLetter {
	t.Helper()
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	list, err := outbox.NewDeadLetters(js).List(context.Background(), sink, 0)
	if err != nil {
		t.Fatalf("list dead letters: %v", err)
	}
	return list
}

func TestWebhookDeliversGlusterEventEndToEnd(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	n := testutil.StartNode(t, "node_id: node-a\nsinks:\n"+sinkYAML("audit", rcv.URL(), "format: gluster\n    bearer_token: ${TOKEN}"), map[string]string{"TOKEN": "s3cret"})
	p := n.Publisher(t)
	id := emit(t, p, event.Envelope{Type: "VOLUME_CREATE", Node: "95cd599c", Data: json.RawMessage(`{"name":"gv1"}`)})

	testutil.Eventually(t, waitFor, func() bool { return rcv.Seen(id) == 1 }, "event %s delivered", id)
	d := rcv.Requests()[0]
	var body map[string]any
	if err := json.Unmarshal(d.Body, &body); err != nil {
		t.Fatalf("body %s: %v", d.Body, err)
	}
	if body["event"] != "VOLUME_CREATE" || body["nodeid"] != "95cd599c" || body["message"].(map[string]any)["name"] != "gv1" {
		t.Errorf("gluster body = %s", d.Body)
	}
	if _, ok := body["ts"].(float64); !ok || len(body) != 4 {
		t.Errorf("gluster body must be exactly {nodeid, ts, event, message}: %s", d.Body)
	}
	if got := d.Header.Get("Authorization"); got != "Bearer s3cret" {
		t.Errorf("Authorization = %q", got)
	}
	// The loop counts the delivery once the response is back, a moment
	// after the receiver saw the request.
	testutil.Eventually(t, waitFor, func() bool { return n.Loop("audit").Stats().Delivered.Load() == 1 }, "delivered counter at 1")
}

func TestWebhookRetriesOn503ThenDelivers(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	rcv.Answer(func(_ testutil.Delivery, seen int) (int, http.Header) {
		if seen < 3 {
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusOK, nil
	})
	n := testutil.StartNode(t, "sinks:\n"+sinkYAML("audit", rcv.URL(), ""), nil)
	id := emit(t, n.Publisher(t), event.Envelope{Type: "VOLUME_START"})

	testutil.Eventually(t, waitFor, func() bool { return n.Loop("audit").Stats().Delivered.Load() == 1 }, "delivered after retries")
	if got := rcv.Seen(id); got != 3 {
		t.Errorf("attempts seen by receiver = %d, want 3 (two 503s, then 200)", got)
	}
	if got := n.Loop("audit").Stats().Retried.Load(); got != 2 {
		t.Errorf("retried = %d, want 2", got)
	}
	if dl := deadLetters(t, n, "audit"); len(dl) != 0 {
		t.Errorf("dead letters = %d, want none", len(dl))
	}
}

func TestWebhookHonoursRetryAfter(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	rcv.Answer(func(_ testutil.Delivery, seen int) (int, http.Header) {
		if seen == 1 {
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"2"}}
		}
		return http.StatusOK, nil
	})
	n := testutil.StartNode(t, "sinks:\n"+sinkYAML("audit", rcv.URL(), ""), nil)
	id := emit(t, n.Publisher(t), event.Envelope{Type: "VOLUME_START"})

	testutil.Eventually(t, waitFor, func() bool { return rcv.Seen(id) == 2 }, "second attempt")
	reqs := rcv.Requests()
	// The policy alone would retry after 20ms; Retry-After asked for 2s.
	if gap := reqs[1].At.Sub(reqs[0].At); gap < 1900*time.Millisecond {
		t.Errorf("second attempt %s after the first, want at least Retry-After (2s)", gap)
	}
}

func TestWebhook400IsDeadLetteredAtOnce(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	rcv.Answer(func(testutil.Delivery, int) (int, http.Header) { return http.StatusBadRequest, nil })
	n := testutil.StartNode(t, "node_id: node-a\nsinks:\n"+sinkYAML("audit", rcv.URL(), ""), nil)
	id := emit(t, n.Publisher(t), event.Envelope{Type: "VOLUME_CREATE", Data: json.RawMessage(`{"name":"gv1"}`)})

	testutil.Eventually(t, waitFor, func() bool { return n.Loop("audit").Stats().DeadLettered.Load() == 1 }, "dead-lettered")
	if got := rcv.Seen(id); got != 1 {
		t.Errorf("attempts = %d, want 1: a 400 is not retried", got)
	}
	dl := deadLetters(t, n, "audit")
	if len(dl) != 1 {
		t.Fatalf("dead letters = %d, want 1", len(dl))
	}
	d := dl[0]
	if d.Event.ID != id || d.Attempts != 1 || d.LastStatus != 400 || d.Reason != "permanent failure" || d.Node != "node-a" || d.LastResponse != "status 400" {
		t.Errorf("dead letter = %+v", d)
	}
	if string(d.Event.Data) != `{"name":"gv1"}` {
		t.Errorf("dead letter keeps the original event: data = %s", d.Event.Data)
	}
}

func TestWebhookExhaustedAfterMaxAttemptsIsDeadLettered(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	rcv.Answer(func(testutil.Delivery, int) (int, http.Header) { return http.StatusInternalServerError, nil })
	n := testutil.StartNode(t, "sinks:\n"+sinkYAML("audit", rcv.URL(), ""), nil)
	id := emit(t, n.Publisher(t), event.Envelope{Type: "VOLUME_CREATE"})

	testutil.Eventually(t, waitFor, func() bool { return n.Loop("audit").Stats().DeadLettered.Load() == 1 }, "dead-lettered")
	if got := rcv.Seen(id); got != 4 {
		t.Errorf("attempts = %d, want max_attempts (4)", got)
	}
	dl := deadLetters(t, n, "audit")
	if len(dl) != 1 || dl[0].Attempts != 4 || dl[0].LastStatus != 500 {
		t.Fatalf("dead letters = %+v", dl)
	}
}

func TestReplayFromDeadLetterReachesOnlyItsSink(t *testing.T) {
	broken, healthy := testutil.NewReceiver(t), testutil.NewReceiver(t)
	broken.Answer(func(_ testutil.Delivery, seen int) (int, http.Header) {
		if seen == 1 {
			return http.StatusUnprocessableEntity, nil
		}
		return http.StatusOK, nil
	})
	n := testutil.StartNode(t, "sinks:\n"+sinkYAML("broken", broken.URL(), "")+sinkYAML("healthy", healthy.URL(), ""), nil)
	id := emit(t, n.Publisher(t), event.Envelope{Type: "VOLUME_DELETE"})

	testutil.Eventually(t, waitFor, func() bool {
		return n.Loop("broken").Stats().DeadLettered.Load() == 1 && healthy.Seen(id) == 1
	}, "dead-lettered on one sink, delivered on the other")

	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	dlq := outbox.NewDeadLetters(js)
	replayed, err := dlq.Replay(context.Background(), "broken", []string{id})
	if err != nil || replayed != 1 {
		t.Fatalf("replay = %d, %v; want 1, nil", replayed, err)
	}
	testutil.Eventually(t, waitFor, func() bool { return broken.Seen(id) == 2 }, "replayed event delivered to its sink")
	if left, _ := dlq.Count(context.Background(), "broken"); left != 0 {
		t.Errorf("dead letters left after replay = %d, want 0", left)
	}
	// The healthy sink must not get it again; emit a marker after the
	// replay and wait for it so "not again" is not a matter of timing.
	marker := emit(t, n.Publisher(t), event.Envelope{Type: "MARKER"})
	testutil.Eventually(t, waitFor, func() bool { return healthy.Seen(marker) == 1 }, "marker delivered")
	if got := healthy.Seen(id); got != 1 {
		t.Errorf("healthy sink saw the replayed event %d times, want 1", got)
	}
}

func TestTypeFilterDeliversOnlyMatchingEvents(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	n := testutil.StartNode(t, "sinks:\n"+sinkYAML("volumes", rcv.URL(), `events: ["VOLUME_*", "PEER_ATTACH"]`), nil)
	p := n.Publisher(t)
	want := []string{
		emit(t, p, event.Envelope{Type: "VOLUME_CREATE"}),
		emit(t, p, event.Envelope{Type: "PEER_ATTACH"}),
	}
	skipped := []string{
		emit(t, p, event.Envelope{Type: "PEER_DETACH"}),
		emit(t, p, event.Envelope{Type: "GEOREP_CREATE"}),
	}
	testutil.Eventually(t, waitFor, func() bool {
		s := n.Loop("volumes").Stats()
		return s.Delivered.Load()+s.Filtered.Load() == 4
	}, "all four events settled")
	for _, id := range want {
		if rcv.Seen(id) != 1 {
			t.Errorf("matching event %s not delivered", id)
		}
	}
	for _, id := range skipped {
		if rcv.Seen(id) != 0 {
			t.Errorf("filtered event %s was delivered", id)
		}
	}
}

func TestDuplicateEmitIsStoredAndDeliveredOnce(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	n := testutil.StartNode(t, "sinks:\n"+sinkYAML("audit", rcv.URL(), ""), nil)
	p := n.Publisher(t)
	e := event.Envelope{ID: "evt-fixed-1", Type: "VOLUME_CREATE"}
	emit(t, p, e)
	pe, err := p.EmitAsync(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pe.Wait(context.Background()); err != nil || !pe.Duplicate() {
		t.Fatalf("second emit: err %v, duplicate %v; want nil, true", err, pe.Duplicate())
	}
	marker := emit(t, p, event.Envelope{Type: "MARKER"})
	testutil.Eventually(t, waitFor, func() bool { return rcv.Seen(marker) == 1 }, "marker delivered")
	if got := rcv.Seen("evt-fixed-1"); got != 1 {
		t.Errorf("duplicate emit delivered %d times, want 1", got)
	}
}

func TestEndpointDownPastMaxAgeIsDeadLetteredBeforeTheOutboxDropsIt(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	rcv.Answer(func(testutil.Delivery, int) (int, http.Header) { return http.StatusServiceUnavailable, nil })
	// The backoff (1h) is far beyond both ages: the last attempt must be
	// pulled in to the event's deadline and the event dead-lettered there.
	n := testutil.StartNode(t, `outbox: {max_age: 4s}
sinks:
  - name: audit
    type: webhook
    url: `+rcv.URL()+`
    retry: {initial: 1h, max_interval: 1h, max_age: 1s}
`, nil)
	p := n.Publisher(t)
	for range 3 {
		emit(t, p, event.Envelope{Type: "VOLUME_CREATE"})
	}
	testutil.Eventually(t, waitFor, func() bool { return n.Loop("audit").Stats().DeadLettered.Load() == 3 }, "3 events dead-lettered")
	for _, dl := range deadLetters(t, n, "audit") {
		if dl.Reason != "gave up after max_age (1s)" || dl.Attempts != 2 {
			t.Errorf("dead letter %s: reason %q after %d attempts, want max_age after 2", dl.Event.ID, dl.Reason, dl.Attempts)
		}
	}
}

func TestDeliveredEventsLeaveTheOutboxAndOwedOnesStay(t *testing.T) {
	ok, down := testutil.NewReceiver(t), testutil.NewReceiver(t)
	down.Answer(func(testutil.Delivery, int) (int, http.Header) { return http.StatusServiceUnavailable, nil })
	n := testutil.StartNode(t, "sinks:\n"+sinkYAML("ok", ok.URL(), ""), nil)
	p := n.Publisher(t)
	for range 20 {
		emit(t, p, event.Envelope{Type: "VOLUME_CREATE"})
	}
	testutil.Eventually(t, waitFor, func() bool { return outboxMsgs(t, n) == 0 }, "delivered events trimmed from the outbox")

	// A second node configuration adds a sink that cannot deliver: what it
	// owes must stay.
	n2 := testutil.StartNode(t, "sinks:\n"+sinkYAML("ok", ok.URL(), "")+
		"  - name: down\n    type: webhook\n    url: "+down.URL()+"\n    retry: {initial: 1h, max_interval: 1h}\n", nil)
	p2 := n2.Publisher(t)
	for range 5 {
		emit(t, p2, event.Envelope{Type: "VOLUME_CREATE"})
	}
	testutil.Eventually(t, waitFor, func() bool { return n2.Loop("ok").Stats().Delivered.Load() == 5 }, "healthy sink delivered")
	// Waiting an hour for the next attempt, each owed event moves to the end
	// of the outbox instead of holding every later event in it.
	testutil.Eventually(t, waitFor, func() bool { return n2.Loop("down").Stats().Parked.Load() == 5 }, "failing sink tried once each and parked")
	// A trim now (as the worker runs every second) keeps what is owed.
	nc, err := nats.Connect(n2.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := outbox.Trim(context.Background(), js, outbox.LogBound{}); err != nil {
		t.Fatal(err)
	}
	if got := outboxMsgs(t, n2); got < 5 {
		t.Errorf("outbox holds %d events, want (at least) the 5 still owed to the failing sink", got)
	}
}

func outboxMsgs(t *testing.T, n *testutil.Node) uint64 {
	t.Helper()
	return streamInfo(t, n, outbox.StreamEvents).State.Msgs
}

func streamInfo(t *testing.T, n *testutil.Node, stream string) *jetstream.StreamInfo {
	t.Helper()
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo()
}

// The attempts stream is on disk, so batches survive a restart on their
// way to the event logs; its cap is the operator's to set.
func TestAttemptLogCapComesFromConfig(t *testing.T) {
	n := testutil.StartNode(t, "outbox:\n  attempt_log_max_bytes: 2MiB\nsinks:\n"+sinkYAML("audit", "http://127.0.0.1:9/", ""), nil)
	cfg := streamInfo(t, n, outbox.StreamAttempts).Config
	if cfg.MaxBytes != 2<<20 || cfg.Storage != jetstream.FileStorage {
		t.Fatalf("attempts stream: max_bytes %d, storage %s; want %d on file", cfg.MaxBytes, cfg.Storage, 2<<20)
	}
}

// TestWorkerOnAnExternalNATSServer: with outbox.url the worker embeds
// nothing and uses the server it is given (here a separate JetStream server).
func TestWorkerOnAnExternalNATSServer(t *testing.T) {
	ext, _ := testutil.StartOutbox(t, outbox.Limits{})
	rcv := testutil.NewReceiver(t)
	n := testutil.StartNode(t, "outbox: {url: "+ext.ClientURL()+"}\nsinks:\n"+sinkYAML("audit", rcv.URL(), ""), nil)
	if n.URL() != ext.ClientURL() {
		t.Fatalf("worker outbox URL = %s, want the external %s", n.URL(), ext.ClientURL())
	}
	id := emit(t, n.Publisher(t), event.Envelope{Type: "VOLUME_CREATE"})
	testutil.Eventually(t, waitFor, func() bool { return rcv.Seen(id) == 1 }, "delivered through the external server")
}

func TestReplayToASinkWithoutConsumerIsRefusedAndKeepsTheDeadLetters(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	rcv.Answer(func(testutil.Delivery, int) (int, http.Header) { return http.StatusBadRequest, nil })
	n := testutil.StartNode(t, "sinks:\n"+sinkYAML("audit", rcv.URL(), ""), nil)
	emit(t, n.Publisher(t), event.Envelope{Type: "VOLUME_CREATE"})
	testutil.Eventually(t, waitFor, func() bool { return n.Loop("audit").Stats().DeadLettered.Load() == 1 }, "dead-lettered")
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	dlq := outbox.NewDeadLetters(js)
	for _, sink := range []string{"gone", "*", "audit.>"} {
		if n, err := dlq.Replay(context.Background(), sink, nil); err == nil || n != 0 {
			t.Errorf("replay to %q = %d, %v; want refused", sink, n, err)
		}
	}
	if left, _ := dlq.Count(context.Background(), "audit"); left != 1 {
		t.Errorf("dead letters left = %d, want 1", left)
	}
}

// TestParkedEventIsRetriedAndCountsItsAttempts: a long retry wait moves the
// event to the end of the outbox; it is attempted again when due, and its
// attempts keep counting towards max_attempts across moves.
func TestParkedEventIsRetriedAndCountsItsAttempts(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	rcv.Answer(func(d testutil.Delivery, seen int) (int, http.Header) {
		if strings.HasPrefix(d.ID, "recovers-") && seen >= 2 {
			return http.StatusOK, nil
		}
		return http.StatusServiceUnavailable, nil
	})
	n := testutil.StartNode(t, "sinks:\n  - name: audit\n    type: webhook\n    url: "+rcv.URL()+
		"\n    retry: {initial: 300ms, multiplier: 1, max_interval: 300ms, max_attempts: 3, jitter: 0.01}\n",
		nil, worker.WithParkAfter(50*time.Millisecond))
	p := n.Publisher(t)
	emit(t, p, event.Envelope{ID: "recovers-1", Type: "VOLUME_CREATE"})
	emit(t, p, event.Envelope{ID: "fails-1", Type: "VOLUME_CREATE"})

	testutil.Eventually(t, waitFor, func() bool {
		s := n.Loop("audit").Stats()
		return s.Delivered.Load() == 1 && s.DeadLettered.Load() == 1
	}, "one delivered after a parked retry, one dead-lettered")
	if got := rcv.Seen("recovers-1"); got != 2 {
		t.Errorf("recovers-1 attempted %d times, want 2", got)
	}
	if got := rcv.Seen("fails-1"); got != 3 {
		t.Errorf("fails-1 attempted %d times, want max_attempts (3)", got)
	}
	if dl := deadLetters(t, n, "audit"); len(dl) != 1 || dl[0].Attempts != 3 || dl[0].Event.ID != "fails-1" {
		t.Errorf("dead letters = %+v, want fails-1 after 3 attempts", dl)
	}
	if n.Loop("audit").Stats().Parked.Load() < 3 {
		t.Errorf("parked %d times, want every retry parked", n.Loop("audit").Stats().Parked.Load())
	}
}

// TestOneRetryingEventDoesNotPinTheOutbox: an event waiting long for its
// next attempt moves to the end of the outbox, so the events after it are
// trimmed once delivered instead of filling the outbox.
func TestOneRetryingEventDoesNotPinTheOutbox(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	rcv.Answer(func(d testutil.Delivery, _ int) (int, http.Header) {
		if d.ID == "poison" {
			return http.StatusInternalServerError, nil
		}
		return http.StatusOK, nil
	})
	n := testutil.StartNode(t, "sinks:\n  - name: audit\n    type: webhook\n    url: "+rcv.URL()+
		"\n    retry: {initial: 1h, max_interval: 1h}\n", nil, worker.WithParkAfter(100*time.Millisecond))
	p := n.Publisher(t)
	emit(t, p, event.Envelope{ID: "poison", Type: "VOLUME_CREATE"})
	for range 200 {
		emit(t, p, event.Envelope{Type: "VOLUME_CREATE"})
	}
	testutil.Eventually(t, waitFor, func() bool { return n.Loop("audit").Stats().Delivered.Load() == 200 }, "the others delivered")
	// The worker trims every second; the poison event's copy moves on every
	// 100ms, so soon only it (and perhaps its previous copy) is left.
	testutil.Eventually(t, waitFor, func() bool { return outboxMsgs(t, n) <= 2 }, "outbox trimmed down to the waiting event")
	if got := rcv.Seen("poison"); got != 1 {
		t.Errorf("poison attempted %d times, want 1 (next attempt in an hour)", got)
	}
}

// TestRateLimitCapsDeliveries counts what arrives in the first second
// (an upper bound: a slow machine only delivers fewer), then that all
// arrive.
func TestRateLimitCapsDeliveries(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	n := testutil.StartNode(t, "sinks:\n"+sinkYAML("audit", rcv.URL(), "rate: 20/s\n    burst: 5\n    concurrency: 16"), nil)
	p := n.Publisher(t)
	for range 40 {
		if _, err := p.EmitAsync(context.Background(), event.Envelope{Type: "VOLUME_CREATE"}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, waitFor, func() bool { return rcv.Distinct() == 40 }, "all 40 delivered")
	reqs := rcv.Requests()
	first := reqs[0].At
	inFirstSecond := 0
	for _, r := range reqs {
		if r.At.Sub(first) < time.Second {
			inFirstSecond++
		}
	}
	// 5 at once, then 20 per second: at most 25 within the first second.
	if inFirstSecond > 25 {
		t.Errorf("%d deliveries in the first second, want at most 25 (rate 20/s, burst 5)", inFirstSecond)
	}
}

// TestCircuitBreakerSavesAttemptsDuringAnOutage: the same outage with and
// without the breaker; with it, far fewer attempts, and in both cases every
// event is delivered and none dead-lettered.
func TestCircuitBreakerSavesAttemptsDuringAnOutage(t *testing.T) {
	attempts := map[string]int{}
	for _, tc := range []struct{ name, breaker string }{
		{"with", "circuit_breaker: {failures: 5, probe_initial: 50ms, probe_max: 200ms}"},
		{"without", "circuit_breaker: {failures: -1}"},
	} {
		rcv := testutil.NewReceiver(t)
		var outage struct {
			sync.Mutex
			until time.Time
		}
		rcv.Answer(func(testutil.Delivery, int) (int, http.Header) {
			outage.Lock()
			defer outage.Unlock()
			if outage.until.IsZero() {
				outage.until = time.Now().Add(1500 * time.Millisecond) // the endpoint is down for 1.5s
			}
			if time.Now().Before(outage.until) {
				return http.StatusServiceUnavailable, nil
			}
			return http.StatusOK, nil
		})
		n := testutil.StartNode(t, "sinks:\n  - name: audit\n    type: webhook\n    url: "+rcv.URL()+
			"\n    concurrency: 8\n    retry: {initial: 20ms, max_interval: 200ms, max_attempts: 50, jitter: 0.1}\n    "+tc.breaker+"\n", nil)
		p := n.Publisher(t)
		for range 100 {
			emit(t, p, event.Envelope{Type: "VOLUME_CREATE"})
		}
		testutil.Eventually(t, waitFor, func() bool { return n.Loop("audit").Stats().Delivered.Load() == 100 }, "%s breaker: all delivered", tc.name)
		if dl := n.Loop("audit").Stats().DeadLettered.Load(); dl != 0 {
			t.Errorf("%s breaker: %d dead-lettered", tc.name, dl)
		}
		attempts[tc.name] = len(rcv.Requests())
	}
	t.Logf("attempts during a 1.5s outage for 100 events: with breaker %d, without %d", attempts["with"], attempts["without"])
	if attempts["with"]*2 > attempts["without"] {
		t.Errorf("with the breaker %d attempts, without %d: want far fewer with it", attempts["with"], attempts["without"])
	}
}

// TestGoneDisablesTheSinkUntilEnabled: a 410 disables the sink (nothing is
// dead-lettered, events wait); enabling it delivers them all.
func TestGoneDisablesTheSinkUntilEnabled(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	var gone atomic.Bool
	gone.Store(true)
	rcv.Answer(testutil.While(&gone, http.StatusGone))
	n := testutil.StartNode(t, "sinks:\n"+sinkYAML("audit", rcv.URL(), "concurrency: 1"), nil)
	p := n.Publisher(t)
	first := emit(t, p, event.Envelope{Type: "VOLUME_CREATE"})
	testutil.Eventually(t, waitFor, func() bool { return n.Loop("audit").Stats().Disabled.Load() }, "sink disabled by 410")
	more := []string{emit(t, p, event.Envelope{Type: "VOLUME_CREATE"}), emit(t, p, event.Envelope{Type: "VOLUME_CREATE"})}
	seenBefore := len(rcv.Requests())

	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	states, err := outbox.OpenSinkStates(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := states.Get(context.Background(), "audit"); !st.Disabled || st.Reason != "endpoint answered 410 Gone" {
		t.Errorf("stored state = %+v, want disabled by 410", st)
	}
	if got := len(rcv.Requests()); got != seenBefore {
		t.Errorf("%d requests reached a disabled sink", got-seenBefore)
	}
	gone.Store(false)
	if err := states.Put(context.Background(), "audit", outbox.SinkState{Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitFor, func() bool { return n.Loop("audit").Stats().Delivered.Load() == 3 }, "the 3 waiting events delivered after enabling")
	for _, id := range append(more, first) {
		if rcv.Seen(id) == 0 {
			t.Errorf("event %s never reached the re-enabled sink", id)
		}
	}
	if dl := n.Loop("audit").Stats().DeadLettered.Load(); dl != 0 {
		t.Errorf("%d dead-lettered; a disabled sink's events must wait", dl)
	}
}

// TestOrderingByKeyHoldsUnderRandomFailures: 20 keys x 30 events, the
// receiver failing 30% of requests at random; per key, every attempt (failed
// or not) must come in emit order, so a failing event holds back its key
// only, and all events arrive.
func TestOrderingByKeyHoldsUnderRandomFailures(t *testing.T) {
	type rec struct {
		key string
		seq int
	}
	var (
		mu       sync.Mutex
		attempts []rec
		rnd      = rand.New(rand.NewPCG(1, 2))
	)
	rcv := testutil.NewReceiver(t)
	rcv.Answer(func(d testutil.Delivery, _ int) (int, http.Header) {
		var e event.Envelope
		_ = json.Unmarshal(d.Body, &e)
		var data struct{ Seq int }
		_ = json.Unmarshal(e.Data, &data)
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, rec{e.Key, data.Seq})
		if rnd.Float64() < 0.3 {
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusOK, nil
	})
	n := testutil.StartNode(t, "sinks:\n  - name: audit\n    type: webhook\n    url: "+rcv.URL()+
		"\n    ordering: key\n    concurrency: 8\n    retry: {initial: 5ms, max_interval: 20ms, max_attempts: 100}\n    circuit_breaker: {failures: -1}\n", nil)
	p := n.Publisher(t)
	const keys, perKey = 20, 30
	for seq := range perKey {
		for k := range keys {
			if _, err := p.EmitAsync(context.Background(), event.Envelope{
				Type: "VOLUME_SET", Key: fmt.Sprintf("gv%d", k), Data: json.RawMessage(fmt.Sprintf(`{"seq":%d}`, seq)),
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	testutil.Eventually(t, waitFor, func() bool { return n.Loop("audit").Stats().Delivered.Load() == keys*perKey }, "all delivered")
	mu.Lock()
	defer mu.Unlock()
	last := map[string]int{}
	for _, a := range attempts {
		if prev, ok := last[a.key]; ok && a.seq < prev {
			t.Fatalf("key %s: event %d attempted after event %d", a.key, a.seq, prev)
		}
		last[a.key] = a.seq
	}
	if n.Loop("audit").Stats().Retried.Load() == 0 {
		t.Error("no retries happened; the test did not exercise ordering across retries")
	}
}

// TestOutageLongerThanMaxAttemptsDeadLettersNothing: while the circuit is
// open, probes that fail do not use up an event's max_attempts; only
// max_age could.
func TestOutageLongerThanMaxAttemptsDeadLettersNothing(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	var down atomic.Bool
	down.Store(true)
	rcv.Answer(testutil.While(&down, http.StatusServiceUnavailable))
	n := testutil.StartNode(t, "sinks:\n  - name: audit\n    type: webhook\n    url: "+rcv.URL()+
		"\n    concurrency: 1\n    retry: {initial: 10ms, max_interval: 20ms, max_attempts: 3}\n    circuit_breaker: {failures: 2, probe_initial: 10ms, probe_max: 20ms}\n", nil)
	id := emit(t, n.Publisher(t), event.Envelope{Type: "VOLUME_CREATE"})
	// Far more attempts than max_attempts, all during the outage.
	testutil.Eventually(t, waitFor, func() bool { return rcv.Seen(id) >= 10 }, "probes during the outage")
	down.Store(false)
	testutil.Eventually(t, waitFor, func() bool { return n.Loop("audit").Stats().Delivered.Load() == 1 }, "delivered once the endpoint is back")
	if dl := n.Loop("audit").Stats().DeadLettered.Load(); dl != 0 {
		t.Errorf("%d dead-lettered during an outage shorter than max_age", dl)
	}
}

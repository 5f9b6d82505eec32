package delivery_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/delivery"
	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/retry"
)

// The loop's own tests: one per way an attempt can end, each against a
// real embedded JetStream (the outbox's streams and a sink's consumer), a
// scripted sink, and recorders of what the loop asked its dependencies
// for.

const sinkName = "unit"

// scriptedSink answers each Send with what answer returns for the call
// (1 for an event's first).
type scriptedSink struct {
	mu     sync.Mutex
	calls  map[string]int
	sent   []string
	answer func(ctx context.Context, call int) error
}

func (s *scriptedSink) Send(ctx context.Context, e *event.Envelope) error {
	s.mu.Lock()
	s.calls[e.ID]++
	n := s.calls[e.ID]
	s.mu.Unlock()
	err := s.answer(ctx, n)
	if err == nil {
		s.mu.Lock()
		s.sent = append(s.sent, e.ID)
		s.mu.Unlock()
	}
	return err
}

func (s *scriptedSink) Close(context.Context) error { return nil }

func (s *scriptedSink) callsOf(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[id]
}

// attemptsSeen records the attempts the loop reports.
type attemptsSeen struct {
	mu  sync.Mutex
	all []outbox.Attempt
}

func (a *attemptsSeen) Record(at outbox.Attempt) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.all = append(a.all, at)
	return nil
}

func (a *attemptsSeen) outcomes() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, at := range a.all {
		out = append(out, fmt.Sprintf("%d:%s", at.Number, at.Outcome))
	}
	return out
}

// statesSeen keeps sink states in memory, as outbox.SinkStates does in a
// bucket.
type statesSeen struct {
	mu  sync.Mutex
	put []outbox.SinkState
}

func (s *statesSeen) Watch(context.Context, string, func(outbox.SinkState)) error { return nil }
func (s *statesSeen) Put(_ context.Context, _ string, st outbox.SinkState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put = append(s.put, st)
	return nil
}

// failingDeadLetters fails the first n writes, then stores in the outbox.
type failingDeadLetters struct {
	mu    sync.Mutex
	fails int
	next  delivery.DeadLetterStore
}

func (f *failingDeadLetters) Put(ctx context.Context, dl outbox.DeadLetter) error {
	f.mu.Lock()
	if f.fails > 0 {
		f.fails--
		f.mu.Unlock()
		return errors.New("dead letter stream unavailable")
	}
	f.mu.Unlock()
	return f.next.Put(ctx, dl)
}

type harness struct {
	t        *testing.T
	js       jetstream.JetStream
	cons     jetstream.Consumer
	pub      *outbox.Publisher
	sink     *scriptedSink
	loop     *delivery.Loop
	attempts *attemptsSeen
	states   *statesSeen
	dlq      *outbox.DeadLetters
	stop     context.CancelFunc
	done     chan struct{}
}

// fastPolicy retries within milliseconds, 4 attempts at most.
var fastPolicy = retry.Policy{Initial: 10 * time.Millisecond, Multiplier: 2, MaxInterval: 50 * time.Millisecond, MaxAttempts: 4, MaxAge: time.Hour, NoJitter: true}

// startLoop runs a loop over a fresh outbox with the sink answering as
// answer does; adjust changes the loop's configuration and dead letter
// store before it starts.
func startLoop(t *testing.T, answer func(ctx context.Context, call int) error, adjust func(*delivery.Config, *delivery.DeadLetterStore)) *harness {
	t.Helper()
	srv, js := testutil.StartOutbox(t, outbox.Limits{})
	ctx := context.Background()
	cons, err := outbox.EnsureConsumer(ctx, js, sinkName, 5*time.Second, 1000)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := outbox.Dial(ctx, srv.ClientURL(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	h := &harness{t: t, js: js, cons: cons, pub: pub, sink: &scriptedSink{calls: map[string]int{}, answer: answer},
		attempts: &attemptsSeen{}, states: &statesSeen{}, dlq: outbox.NewDeadLetters(js), done: make(chan struct{})}
	cfg := delivery.Config{Name: sinkName, Sink: h.sink, Policy: fastPolicy, Concurrency: 4, Timeout: 2 * time.Second,
		Node: "n1", AckWait: 5 * time.Second, Attempts: h.attempts, States: h.states}
	var dlq delivery.DeadLetterStore = h.dlq
	if adjust != nil {
		adjust(&cfg, &dlq)
	}
	h.loop, err = delivery.NewLoop(cfg, cons, dlq, outbox.NewRetries(js), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	h.stop = stop
	go func() { defer close(h.done); _ = h.loop.Run(runCtx) }()
	t.Cleanup(h.shutdown)
	return h
}

func (h *harness) shutdown() {
	h.stop()
	<-h.done
}

func (h *harness) emit(e event.Envelope) string {
	h.t.Helper()
	id, err := h.pub.Emit(context.Background(), e)
	if err != nil {
		h.t.Fatalf("emit: %v", err)
	}
	return id
}

// settled waits until the consumer holds nothing for the sink: every
// message in the outbox acknowledged or terminated. It compares the ack
// floor with the stream's last message, because the consumer counts a
// message just stored as pending only a moment after the publisher's
// acknowledgement.
func (h *harness) settled() {
	h.t.Helper()
	ctx := context.Background()
	testutil.Eventually(h.t, 10*time.Second, func() bool {
		stream, err := h.js.Stream(ctx, outbox.StreamEvents)
		if err != nil {
			return false
		}
		last := stream.CachedInfo().State.LastSeq
		info, err := h.cons.Info(ctx)
		return err == nil && info.AckFloor.Stream >= last && info.NumPending == 0 && info.NumAckPending == 0
	}, "the sink's consumer settled every event")
}

func (h *harness) deadLetters() []outbox.DeadLetter {
	h.t.Helper()
	dls, err := h.dlq.List(context.Background(), sinkName, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	return dls
}

func TestLoopDeliversAndAcknowledges(t *testing.T) {
	h := startLoop(t, func(context.Context, int) error { return nil }, nil)
	id := h.emit(event.Envelope{Type: "VOLUME_START"})
	h.settled()
	st := h.loop.Stats()
	if st.Delivered.Load() != 1 || st.Retried.Load() != 0 || h.sink.callsOf(id) != 1 {
		t.Errorf("delivered %d, retried %d, calls %d; want 1, 0, 1", st.Delivered.Load(), st.Retried.Load(), h.sink.callsOf(id))
	}
	if got := h.attempts.outcomes(); strings.Join(got, ",") != "1:delivered" {
		t.Errorf("attempts %v, want [1:delivered]", got)
	}
}

func TestLoopRetriesARetryableFailure(t *testing.T) {
	h := startLoop(t, func(_ context.Context, call int) error {
		if call < 3 {
			return retry.NewRetryable(errors.New("503 from the endpoint"))
		}
		return nil
	}, nil)
	id := h.emit(event.Envelope{Type: "VOLUME_START"})
	testutil.Eventually(t, 10*time.Second, func() bool { return h.loop.Stats().Delivered.Load() == 1 }, "delivered after its retries")
	h.settled()
	if got := strings.Join(h.attempts.outcomes(), ","); got != "1:retried,2:retried,3:delivered" || h.sink.callsOf(id) != 3 {
		t.Errorf("attempts %s after %d calls, want 1:retried,2:retried,3:delivered after 3", got, h.sink.callsOf(id))
	}
	if len(h.deadLetters()) != 0 {
		t.Error("a delivered event was dead-lettered")
	}
}

func TestLoopDeadLettersAPermanentFailureAtOnce(t *testing.T) {
	h := startLoop(t, func(context.Context, int) error {
		return retry.NewPermanent(errors.New("400 bad request"))
	}, nil)
	id := h.emit(event.Envelope{Type: "VOLUME_START"})
	h.settled()
	dls := h.deadLetters()
	if len(dls) != 1 || dls[0].Event.ID != id || dls[0].Reason != "permanent failure" || dls[0].Attempts != 1 || dls[0].Node != "n1" {
		t.Fatalf("dead letters %+v, want %s once after 1 attempt, permanent failure, from n1", dls, id)
	}
	if !strings.Contains(dls[0].LastError, "400 bad request") {
		t.Errorf("last error %q, want the sink's", dls[0].LastError)
	}
}

func TestLoopDeadLettersWhenAttemptsRunOut(t *testing.T) {
	h := startLoop(t, func(context.Context, int) error { return errors.New("connection refused") }, nil)
	id := h.emit(event.Envelope{Type: "VOLUME_START"})
	h.settled()
	dls := h.deadLetters()
	if len(dls) != 1 || dls[0].Reason != "gave up after max_attempts (4)" || dls[0].Attempts != 4 || h.sink.callsOf(id) != 4 {
		t.Fatalf("dead letters %+v after %d calls, want one after max_attempts (4)", dls, h.sink.callsOf(id))
	}
	if got := strings.Join(h.attempts.outcomes(), ","); got != "1:retried,2:retried,3:retried,4:dead_lettered" {
		t.Errorf("attempts %s", got)
	}
}

// 410 Gone stops the sink on every node; the event is kept for when an
// operator enables it again.
func TestLoopDisablesTheSinkOnGone(t *testing.T) {
	h := startLoop(t, func(context.Context, int) error {
		return &retry.Error{Kind: retry.Permanent, Status: http.StatusGone, Err: errors.New("410 gone")}
	}, nil)
	id := h.emit(event.Envelope{Type: "VOLUME_START"})
	testutil.Eventually(t, 10*time.Second, func() bool { return h.loop.Stats().Disabled.Load() }, "the sink disabled")
	h.states.mu.Lock()
	put := append([]outbox.SinkState(nil), h.states.put...)
	h.states.mu.Unlock()
	if len(put) != 1 || !put[0].Disabled || put[0].Reason != "endpoint answered 410 Gone" || put[0].Node != "n1" {
		t.Errorf("states stored %+v, want one disabled by n1 for 410 Gone", put)
	}
	h.shutdown()
	info, err := h.cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending+uint64(info.NumAckPending)+uint64(info.NumRedelivered) == 0 || len(h.deadLetters()) != 0 || h.sink.callsOf(id) != 1 {
		t.Errorf("after 410: consumer %+v, %d dead letters, %d calls; want the event kept, none, 1", info, len(h.deadLetters()), h.sink.callsOf(id))
	}
}

func TestLoopAcknowledgesWhatTheFilterSkips(t *testing.T) {
	filter, err := event.NewFilter([]string{"VOLUME_*"})
	if err != nil {
		t.Fatal(err)
	}
	h := startLoop(t, func(context.Context, int) error { return nil }, func(c *delivery.Config, _ *delivery.DeadLetterStore) { c.Filter = filter })
	skipped := h.emit(event.Envelope{Type: "PEER_ATTACH"})
	kept := h.emit(event.Envelope{Type: "VOLUME_STOP"})
	h.settled()
	if h.sink.callsOf(skipped) != 0 || h.sink.callsOf(kept) != 1 || h.loop.Stats().Filtered.Load() != 1 {
		t.Errorf("calls: skipped %d, kept %d; filtered %d; want 0, 1, 1", h.sink.callsOf(skipped), h.sink.callsOf(kept), h.loop.Stats().Filtered.Load())
	}
}

// Something other than emit wrote to the outbox: the bytes are kept as a
// dead letter, not lost and not retried for ever.
func TestLoopDeadLettersWhatIsNotAnEvent(t *testing.T) {
	h := startLoop(t, func(context.Context, int) error { return nil }, nil)
	if _, err := h.js.Publish(context.Background(), outbox.EventSubject("RAW"), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	h.settled()
	dls := h.deadLetters()
	if len(dls) != 1 || dls[0].Reason != "not a Courier event" || !strings.Contains(string(dls[0].Event.Data), "not json") {
		t.Fatalf("dead letters %+v, want the raw bytes kept as not a Courier event", dls)
	}
}

// A dead letter that cannot be stored leaves the event in the outbox, to be
// dead-lettered on a later attempt: never acknowledged without its copy.
func TestLoopKeepsTheEventWhenItsDeadLetterCannotBeStored(t *testing.T) {
	h := startLoop(t, func(context.Context, int) error { return retry.NewPermanent(errors.New("422")) },
		func(_ *delivery.Config, dlq *delivery.DeadLetterStore) {
			*dlq = &failingDeadLetters{fails: 2, next: *dlq}
		})
	id := h.emit(event.Envelope{Type: "VOLUME_START"})
	h.settled()
	dls := h.deadLetters()
	if len(dls) != 1 || dls[0].Event.ID != id || h.sink.callsOf(id) != 3 || h.loop.Stats().DeadLettered.Load() != 1 {
		t.Errorf("%d dead letters after %d calls (%d counted), want the event once, after 3 calls", len(dls), h.sink.callsOf(id), h.loop.Stats().DeadLettered.Load())
	}
}

// While the circuit is open, a failed probe says nothing about the event it
// carried: running out of attempts then does not dead-letter it.
func TestLoopDoesNotDeadLetterAProbeDuringAnOutage(t *testing.T) {
	h := startLoop(t, func(_ context.Context, call int) error {
		if call <= 3 {
			return errors.New("connection refused")
		}
		return nil
	}, func(c *delivery.Config, _ *delivery.DeadLetterStore) {
		c.Policy.MaxAttempts = 2
		c.Breaker.Failures, c.Breaker.ProbeInitial, c.Breaker.ProbeMax = 1, 10*time.Millisecond, 20*time.Millisecond
	})
	id := h.emit(event.Envelope{Type: "VOLUME_START"})
	testutil.Eventually(t, 10*time.Second, func() bool { return h.loop.Stats().Delivered.Load() == 1 }, "delivered once the endpoint answers")
	if len(h.deadLetters()) != 0 || h.sink.callsOf(id) != 4 {
		t.Errorf("%d dead letters after %d calls, want none after 4 (2 attempts, then probes)", len(h.deadLetters()), h.sink.callsOf(id))
	}
}

// A retry due later than ParkAfter moves the event to the end of the
// outbox, carrying its attempt count and first-stored time along.
func TestLoopParksALongRetryAndCountsOn(t *testing.T) {
	h := startLoop(t, func(_ context.Context, call int) error {
		if call == 1 {
			return errors.New("timeout")
		}
		return nil
	}, func(c *delivery.Config, _ *delivery.DeadLetterStore) {
		c.ParkAfter = 5 * time.Millisecond
		c.Policy.Initial = 100 * time.Millisecond
		c.Policy.MaxInterval = time.Second
	})
	h.emit(event.Envelope{Type: "VOLUME_START"})
	testutil.Eventually(t, 10*time.Second, func() bool { return h.loop.Stats().Delivered.Load() == 1 }, "delivered after parking")
	h.settled()
	if h.loop.Stats().Parked.Load() == 0 {
		t.Error("the retry was not parked")
	}
	if got := strings.Join(h.attempts.outcomes(), ","); got != "1:retried,2:delivered" {
		t.Errorf("attempts %s, want 1:retried,2:delivered (the count survives the move)", got)
	}
}

// Shutting down while an attempt is under way hands the event back: it is
// not counted as a failed attempt, and it stays in the outbox.
func TestLoopHandsBackAnAttemptCutByShutdown(t *testing.T) {
	started := make(chan struct{}, 1)
	h := startLoop(t, func(ctx context.Context, _ int) error {
		started <- struct{}{}
		<-ctx.Done() // the drain timeout cancels the attempt
		return ctx.Err()
	}, func(c *delivery.Config, _ *delivery.DeadLetterStore) {
		c.Timeout, c.DrainTimeout = time.Minute, 50*time.Millisecond
	})
	h.emit(event.Envelope{Type: "VOLUME_START"})
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the attempt did not start")
	}
	h.shutdown()
	st := h.loop.Stats()
	if st.Retried.Load()+st.DeadLettered.Load()+st.Delivered.Load() != 0 || len(h.attempts.outcomes()) != 0 {
		t.Errorf("stats %+v, attempts %v: an interrupted attempt counted", st, h.attempts.outcomes())
	}
	info, err := h.cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Stream != 0 || len(h.deadLetters()) != 0 {
		t.Errorf("ack floor %d, %d dead letters: the event left the outbox", info.AckFloor.Stream, len(h.deadLetters()))
	}
}

func TestLoopSkipsAnotherSinksRetry(t *testing.T) {
	h := startLoop(t, func(context.Context, int) error { return nil }, nil)
	data, err := json.Marshal(event.Envelope{ID: "other-1", Type: "VOLUME_START", Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	// The consumer reads the whole outbox, other sinks' retries included.
	if err := outbox.NewRetries(h.js).Requeue(context.Background(), "other", "VOLUME_START", data, nats.Header{}, "retry:other:1"); err != nil {
		t.Fatal(err)
	}
	id := h.emit(event.Envelope{Type: "VOLUME_START"})
	h.settled()
	if calls := h.sink.callsOf("other-1"); calls != 0 {
		t.Errorf("another sink's retry was sent %d times, want 0", calls)
	}
	if st := h.loop.Stats(); st.Delivered.Load() != 1 || h.sink.callsOf(id) != 1 {
		t.Errorf("delivered %d, calls of the event %d; want 1, 1", st.Delivered.Load(), h.sink.callsOf(id))
	}
}

// Package sinktest is the conformance suite every sink passes, in the spirit
// of Watermill's tests.TestPubSub: it delivers events with none lost, the
// event id arrives in the transport's own id field, failures are classified
// as the delivery loop expects, and the peer going away and coming back
// mid-stream loses nothing. Each sink's test provides a Peer: a real
// destination (HTTP server, RabbitMQ, a Kafka-protocol broker) it can stop
// and start again.
package sinktest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/retry"
	"github.com/courierhq/courier/sinks"
)

// Received is one event as the peer holds it.
type Received struct {
	// ID is the event id read from the body (whatever the format).
	ID string
	// TransportID is the id as the transport carries it: the webhook-id
	// header, the AMQP message-id, the Kafka header.
	TransportID string
	// TraceParent is the W3C traceparent the transport carried, if any.
	TraceParent string
}

// Peer is the destination of the sink under test.
type Peer interface {
	// NewSink returns a sink delivering to this peer; the suite closes it.
	NewSink(t testing.TB) sinks.Sink
	// Received returns what the peer holds so far, duplicates included.
	Received(t testing.TB) []Received
	// Stop makes the peer unreachable; Start brings it back at the same
	// address (what was received before may be kept or not).
	Stop(t testing.TB)
	Start(t testing.TB)
	// Refusing returns a sink and an event such that the peer refuses that
	// event for good (webhook: 400; AMQP: unroutable; Kafka: too large).
	Refusing(t testing.TB) (sinks.Sink, *event.Envelope)
}

// wait bounds each condition the suite waits for.
const wait = 30 * time.Second

// Run runs the suite against a peer.
func Run(t *testing.T, p Peer) {
	t.Run("DeliversEveryEventWithItsID", func(t *testing.T) { deliversEvery(t, p) })
	t.Run("CarriesTraceContext", func(t *testing.T) { carriesTrace(t, p) })
	t.Run("RefusedEventIsPermanentFailure", func(t *testing.T) { refusedIsPermanent(t, p) })
	t.Run("UnreachablePeerIsRetryable", func(t *testing.T) { unreachableIsRetryable(t, p) })
	t.Run("PeerRestartMidStreamLosesNothing", func(t *testing.T) { survivesRestart(t, p) })
}

// NewEvent returns a valid event with the given id.
func NewEvent(id string) *event.Envelope {
	e := &event.Envelope{ID: id, Type: "VOLUME_CREATE", Source: "sinktest", Node: "node-a", Key: "gv1",
		Data: json.RawMessage(fmt.Sprintf(`{"name":"gv1","id":%q}`, id))}
	if err := e.Complete("node-a"); err != nil {
		panic(err) // only fails when the system's random source does
	}
	return e
}

func newSink(t *testing.T, p Peer) sinks.Sink {
	s := p.NewSink(t)
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// Distinct returns the ids received, counting each once, and fails the test
// on an event whose transport id differs from its own.
func distinct(t testing.TB, p Peer) map[string]bool {
	seen := map[string]bool{}
	for _, r := range p.Received(t) {
		if r.TransportID != r.ID {
			t.Errorf("event %s arrived with transport id %q", r.ID, r.TransportID)
		}
		seen[r.ID] = true
	}
	return seen
}

func eventually(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", wait, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func deliversEvery(t *testing.T, p Peer) {
	s := newSink(t, p)
	const n, workers = 300, 16
	prefix := fmt.Sprintf("deliver-%d-", time.Now().UnixNano())
	ids := make(chan string, n)
	for i := range n {
		ids <- fmt.Sprintf("%s%04d", prefix, i)
	}
	close(ids)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				err := s.Send(ctx, NewEvent(id))
				cancel()
				if err != nil {
					t.Errorf("send %s: %v", id, err)
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, func() bool { return countPrefix(distinct(t, p), prefix) == n }, fmt.Sprintf("all %d events received", n))
}

func countPrefix(seen map[string]bool, prefix string) int {
	c := 0
	for id := range seen {
		if len(id) >= len(prefix) && id[:len(prefix)] == prefix {
			c++
		}
	}
	return c
}

func refusedIsPermanent(t *testing.T, p Peer) {
	s, e := p.Refusing(t)
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err := s.Send(ctx, e)
	if err == nil {
		t.Fatal("a refused event was reported delivered")
	}
	if k := retry.Classify(err).Kind; k != retry.Permanent {
		t.Fatalf("refused event: %v classified %s, want permanent", err, k)
	}
}

func unreachableIsRetryable(t *testing.T, p Peer) {
	s := newSink(t, p)
	p.Stop(t)
	defer p.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.Send(ctx, NewEvent(fmt.Sprintf("down-%d", time.Now().UnixNano())))
	if err == nil {
		t.Fatal("send to a stopped peer succeeded")
	}
	if k := retry.Classify(err).Kind; k != retry.Retryable {
		t.Fatalf("stopped peer: %v classified %s, want retryable", err, k)
	}
}

// survivesRestart sends events one after the other, retrying each
// retryable failure as the delivery loop would, while the peer is stopped
// and started again; every event must arrive.
func survivesRestart(t *testing.T, p Peer) {
	s := newSink(t, p)
	const n = 200
	prefix := fmt.Sprintf("restart-%d-", time.Now().UnixNano())
	var (
		sent     sync.WaitGroup
		failures atomic.Int64
	)
	sent.Add(1)
	progress := make(chan int, n)
	go func() {
		defer sent.Done()
		for i := range n {
			id := fmt.Sprintf("%s%04d", prefix, i)
			deadline := time.Now().Add(2 * wait)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := s.Send(ctx, NewEvent(id))
				cancel()
				if err == nil {
					break
				}
				failures.Add(1)
				if retry.Classify(err).Kind == retry.Permanent || time.Now().After(deadline) {
					t.Errorf("send %s: %v", id, err)
					return
				}
				time.Sleep(20 * time.Millisecond) // the delivery loop's backoff, shortened
			}
			progress <- i
		}
	}()
	// Stop the peer once a quarter went through; start it again once the
	// sender has seen it fail.
	for i := range progress {
		if i == n/4 {
			break
		}
	}
	p.Stop(t)
	eventually(t, func() bool { return failures.Load() > 0 }, "the sender noticed the peer was gone")
	p.Start(t)
	sent.Wait()
	eventually(t, func() bool { return countPrefix(distinct(t, p), prefix) == n }, fmt.Sprintf("all %d events received across the restart", n))
}

// carriesTrace sends one event inside a (sampled) span context and checks
// the peer received that trace, so a receiver's spans can join it.
func carriesTrace(t *testing.T, p Peer) {
	s := newSink(t, p)
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled,
	}))
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	id := fmt.Sprintf("trace-%d", time.Now().UnixNano())
	if err := s.Send(ctx, NewEvent(id)); err != nil {
		t.Fatalf("send: %v", err)
	}
	var got string
	eventually(t, func() bool {
		for _, r := range p.Received(t) {
			if r.ID == id {
				got = r.TraceParent
				return true
			}
		}
		return false
	}, "traced event received")
	if !strings.Contains(got, traceID.String()) {
		t.Errorf("traceparent at the peer = %q, want trace %s", got, traceID)
	}
}

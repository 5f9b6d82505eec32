package worker_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/observability"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/worker"
)

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// TestOneEventIsOneTraceFromEmitToReceiver: an emit followed by a 503 and a
// 200 gives one trace with the producer span, an attempt span per attempt
// (numbered, with its outcome), an HTTP client span per request, and the
// receiver sees that trace in traceparent.
func TestOneEventIsOneTraceFromEmitToReceiver(t *testing.T) {
	spans, tp, tel := traced(t)
	rcv := testutil.NewReceiver(t)
	rcv.Answer(testutil.FailFirst(http.StatusServiceUnavailable))
	n := testutil.StartNode(t, "sinks:\n"+sinkYAML("audit", rcv.URL(), ""), nil, worker.WithTelemetry(tel))
	id := emit(t, n.Publisher(t, outbox.WithTracerProvider(tp)), event.Envelope{Type: "VOLUME_CREATE"})

	testutil.Eventually(t, waitFor, func() bool { return n.Loop("audit").Stats().Delivered.Load() == 1 }, "delivered")
	var attempts []sdktrace.ReadOnlySpan
	var producer, clients []sdktrace.ReadOnlySpan
	testutil.Eventually(t, waitFor, func() bool {
		attempts, producer, clients = nil, nil, nil
		for _, s := range spans.GetSpans().Snapshots() {
			switch s.SpanKind() {
			case trace.SpanKindProducer:
				producer = append(producer, s)
			case trace.SpanKindConsumer:
				attempts = append(attempts, s)
			case trace.SpanKindClient:
				clients = append(clients, s)
			}
		}
		return len(producer) == 1 && len(attempts) == 2 && len(clients) == 2
	}, "1 producer, 2 attempt and 2 HTTP client spans")

	traceID := producer[0].SpanContext().TraceID()
	if got := attr(producer[0], "messaging.message.id"); got != id {
		t.Errorf("producer span messaging.message.id = %q, want %s", got, id)
	}
	want := map[string]string{"1": "retried", "2": "delivered"}
	for _, s := range attempts {
		if s.SpanContext().TraceID() != traceID {
			t.Errorf("attempt span in trace %s, want %s", s.SpanContext().TraceID(), traceID)
		}
		n := attr(s, "courier.delivery.attempt")
		if got := attr(s, "courier.delivery.outcome"); got != want[n] {
			t.Errorf("attempt %s outcome = %q, want %q", n, got, want[n])
		}
		if attr(s, "messaging.message.id") != id || attr(s, "courier.sink") != "audit" {
			t.Errorf("attempt span attributes = %v", s.Attributes())
		}
	}
	for _, s := range clients {
		if s.SpanContext().TraceID() != traceID {
			t.Errorf("HTTP client span in trace %s, want %s", s.SpanContext().TraceID(), traceID)
		}
	}
	for _, d := range rcv.Requests() {
		if tp := d.Header.Get("traceparent"); !strings.Contains(tp, traceID.String()) {
			t.Errorf("receiver got traceparent %q, want trace %s", tp, traceID)
		}
	}
}

// TestMetricsAfterAKnownRun scrapes /metrics after one retried and one
// dead-lettered event.
func TestMetricsAfterAKnownRun(t *testing.T) {
	tel, err := observability.New(sdktrace.NewTracerProvider())
	if err != nil {
		t.Fatal(err)
	}
	rcv := testutil.NewReceiver(t)
	rcv.Answer(testutil.RefuseBadRetryOthers)
	n := testutil.StartNode(t, "sinks:\n"+sinkYAML("audit", rcv.URL(), `events: ["VOLUME_*"]`), nil, worker.WithTelemetry(tel))
	p := n.Publisher(t)
	emit(t, p, event.Envelope{Type: "VOLUME_CREATE"})
	emit(t, p, event.Envelope{ID: "bad-1", Type: "VOLUME_CREATE"})
	emit(t, p, event.Envelope{Type: "PEER_ATTACH"})
	testutil.Eventually(t, waitFor, func() bool {
		s := n.Loop("audit").Stats()
		return s.Delivered.Load() == 1 && s.DeadLettered.Load() == 1 && s.Filtered.Load() == 1
	}, "run settled")

	// The loop acknowledges in bursts, just after it counts an attempt:
	// scrape until the outbox has the last acknowledgement (or give up and
	// report what the last scrape lacks).
	var body string
	for deadline := time.Now().Add(waitFor); ; {
		_, body = testutil.Get(t, n.AdminHandler(), "/metrics")
		if strings.Contains(body, `courier_consumer_pending{sink="audit"} 0`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, want := range []string{
		`courier_deliveries_total{outcome="delivered",sink="audit"} 1`,
		`courier_deliveries_total{outcome="retried",sink="audit"} 1`,
		`courier_deliveries_total{outcome="dead_lettered",sink="audit"} 1`,
		`courier_deliveries_total{outcome="filtered",sink="audit"} 1`,
		`courier_dead_letters{sink="audit"} 1`,
		`courier_delivery_latency_seconds_count{sink="audit"} 1`,
		`courier_outbox_stored_total 3`,
		`courier_consumer_pending{sink="audit"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := testutil.Get(t, n.AdminHandler(), path); code != http.StatusOK {
			t.Errorf("%s = %d, want 200", path, code)
		}
	}
}

func TestReplayContinuesTheEventsTrace(t *testing.T) {
	spans, tp, tel := traced(t)
	rcv := testutil.NewReceiver(t)
	rcv.Answer(testutil.FailFirst(http.StatusBadRequest))
	n := testutil.StartNode(t, "sinks:\n"+sinkYAML("audit", rcv.URL(), ""), nil, worker.WithTelemetry(tel))
	id := emit(t, n.Publisher(t, outbox.WithTracerProvider(tp)), event.Envelope{Type: "VOLUME_CREATE"})
	testutil.Eventually(t, waitFor, func() bool { return n.Loop("audit").Stats().DeadLettered.Load() == 1 }, "dead-lettered")

	dl := deadLetters(t, n, "audit")
	if len(dl) != 1 || dl[0].Trace["traceparent"] == "" {
		t.Fatalf("dead letter keeps no trace context: %+v", dl)
	}
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := outbox.NewDeadLetters(js).Replay(context.Background(), "audit", []string{id}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitFor, func() bool { return n.Loop("audit").Stats().Delivered.Load() == 1 }, "replay delivered")

	var traceIDs = map[string]bool{}
	events := map[string]bool{}
	testutil.Eventually(t, waitFor, func() bool {
		clear(traceIDs)
		clear(events)
		for _, s := range spans.GetSpans().Snapshots() {
			if s.SpanKind() == trace.SpanKindProducer || s.SpanKind() == trace.SpanKindConsumer {
				traceIDs[s.SpanContext().TraceID().String()] = true
			}
			for _, e := range s.Events() {
				events[e.Name] = true
			}
		}
		return events["dead_lettered"] && events["replayed"]
	}, "dead_lettered and replayed span events")
	if len(traceIDs) != 1 {
		t.Errorf("emit, attempt and replayed attempt spans are in %d traces, want 1", len(traceIDs))
	}
}

// TestAMQPPublishJoinsTheEventsTrace: the broker's message carries the
// trace, below a producer span for the publish.
func TestAMQPPublishJoinsTheEventsTrace(t *testing.T) {
	exchange, ch, queue := testutil.AMQPQueue(t, "trace")
	spans, tp, tel := traced(t)
	n := testutil.StartNode(t, "sinks:\n  - name: bus\n    type: amqp\n    url: "+testutil.AMQPURL()+"\n    exchange: "+exchange+"\n", nil, worker.WithTelemetry(tel))
	emit(t, n.Publisher(t, outbox.WithTracerProvider(tp)), event.Envelope{Type: "VOLUME_CREATE"})
	var traceparent string
	testutil.Eventually(t, waitFor, func() bool {
		m, ok, err := ch.Get(queue, true)
		if err != nil || !ok {
			return false
		}
		traceparent, _ = m.Headers["traceparent"].(string)
		return true
	}, "message in the queue")
	var publish sdktrace.ReadOnlySpan
	testutil.Eventually(t, waitFor, func() bool {
		for _, s := range spans.GetSpans().Snapshots() {
			if s.Name() == "send "+exchange {
				publish = s
			}
		}
		return publish != nil
	}, "publish span")
	want := "00-" + publish.SpanContext().TraceID().String() + "-" + publish.SpanContext().SpanID().String() + "-01"
	if traceparent != want {
		t.Errorf("message traceparent = %q, want the publish span's %q", traceparent, want)
	}
	if publish.Parent().SpanID() == (trace.SpanID{}) {
		t.Error("publish span has no parent; want the delivery attempt's span")
	}
}

// traced returns telemetry that records every span in memory.
func traced(t *testing.T) (*tracetest.InMemoryExporter, *sdktrace.TracerProvider, *observability.Telemetry) {
	t.Helper()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	tel, err := observability.New(tp)
	if err != nil {
		t.Fatal(err)
	}
	return spans, tp, tel
}

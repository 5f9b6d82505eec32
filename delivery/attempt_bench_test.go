package delivery

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/retry"
)

// storedMsg is a message as the outbox hands it out, settled in memory.
type storedMsg struct {
	data    []byte
	headers nats.Header
	md      jetstream.MsgMetadata
	acks    atomic.Int64 // the loop's acker sends them from a goroutine of its own
}

func (m *storedMsg) Metadata() (*jetstream.MsgMetadata, error) { md := m.md; return &md, nil }
func (m *storedMsg) Data() []byte                              { return m.data }
func (m *storedMsg) Headers() nats.Header                      { return m.headers }
func (m *storedMsg) Subject() string                           { return "courier.events.order.created" }
func (m *storedMsg) Reply() string                             { return "" }
func (m *storedMsg) Ack() error                                { m.acks.Add(1); return nil }
func (m *storedMsg) DoubleAck(context.Context) error           { m.acks.Add(1); return nil }
func (m *storedMsg) Nak() error                                { return nil }
func (m *storedMsg) NakWithDelay(time.Duration) error          { return nil }
func (m *storedMsg) InProgress() error                         { return nil }
func (m *storedMsg) Term() error                               { return nil }
func (m *storedMsg) TermWithReason(string) error               { return nil }

type acceptingSink struct{}

func (acceptingSink) Send(context.Context, *event.Envelope) error { return nil }
func (acceptingSink) Close(context.Context) error                 { return nil }

// BenchmarkAttempt is what the delivery loop itself costs per delivered
// event: decoding, filtering, the span (no exporter, as by default), the
// breaker, the decision, the metrics (a real SDK meter, as the worker's
// Prometheus one) and the ack, against a sink that accepts at once. The
// NATS client's metadata parsing and the network are outside it; the
// backlog drain in bench/ measures those.
func BenchmarkAttempt(b *testing.B) {
	l, err := NewLoop(Config{
		Name: "bench", Sink: acceptingSink{}, Policy: retry.DefaultPolicy(),
		Timeout: 5 * time.Second, AckWait: 5 * time.Second,
		Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
	}, nil, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	e := event.Envelope{Type: "order.created", Source: "shop", Data: []byte(`{"order":12345,"total":"99.90","currency":"EUR","lines":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"note":"leave at the door, ring twice"}`)}
	if err := e.Complete("n1"); err != nil {
		b.Fatal(err)
	}
	data, err := json.Marshal(&e) // as the publisher stores it
	if err != nil {
		b.Fatal(err)
	}
	hdr := nats.Header{}
	hdr.Set(nats.MsgIdHdr, e.ID)
	hdr.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	msg := &storedMsg{data: data, headers: hdr, md: jetstream.MsgMetadata{NumDelivered: 1, Timestamp: time.Now()}}
	ctx := context.Background()
	l.acks = startAcker(l.log) // as Run does
	b.ReportAllocs()
	for b.Loop() {
		l.handle(ctx, msg)
	}
	l.acks.stop()
	if n := msg.acks.Load(); n != int64(b.N) {
		b.Fatalf("%d acks for %d attempts", n, b.N)
	}
}

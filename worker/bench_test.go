package worker_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/observability"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/worker"
)

// e2eRun emits n events (paced at rate per second, or as fast as the outbox
// takes them when rate is 0) through a node with fsync-before-ack and one
// webhook sink answering 200, and waits until the receiver has them all.
// It reports events/s from the first emit to the last receipt, and the
// emit-to-receipt latency percentiles.
func e2eRun(b *testing.B, n, rate int, tp trace.TracerProvider) {
	b.StopTimer() // setup is not measured; ResetTimer here would hide earlier iterations
	rcv := testutil.NewReceiver(b)
	var opts []worker.Option
	var pubOpts []outbox.PublisherOption
	if tp != nil {
		tel, err := observability.New(tp)
		if err != nil {
			b.Fatal(err)
		}
		opts = append(opts, worker.WithTelemetry(tel))
		pubOpts = append(pubOpts, outbox.WithTracerProvider(tp))
	}
	node := testutil.StartNode(b, "sinks:\n  - name: bench\n    type: webhook\n    url: "+rcv.URL()+"\n    concurrency: 64\n", nil, opts...)
	pub := node.Publisher(b, pubOpts...)
	var emitted sync.Map // id -> time.Time
	data := []byte(`{"name":"` + string(make([]byte, 0)) + `gv1","note":"` + fmt.Sprintf("%0120d", 0) + `"}`)

	b.StartTimer()
	start := time.Now()
	var interval time.Duration
	if rate > 0 {
		interval = time.Second / time.Duration(rate)
	}
	var last *outbox.Pending
	for i := range n {
		if interval > 0 {
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d) // pacing the offered load, not synchronisation
			}
		}
		id := fmt.Sprintf("bench-%08d", i)
		emitted.Store(id, time.Now())
		pe, err := pub.EmitAsync(context.Background(), event.Envelope{ID: id, Type: "VOLUME_CREATE", Data: data})
		if err != nil {
			b.Fatal(err)
		}
		last = pe
	}
	if _, err := last.Wait(context.Background()); err != nil {
		b.Fatal(err)
	}
	testutil.Eventually(b, 5*time.Minute, func() bool { return rcv.Distinct() >= n }, "all %d events received", n)
	elapsed := time.Since(start)
	b.StopTimer()

	lat := make([]time.Duration, 0, n)
	for _, d := range rcv.Requests() {
		if t0, ok := emitted.LoadAndDelete(d.ID); ok {
			lat = append(lat, d.At.Sub(t0.(time.Time)))
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkEndToEndWebhook: emit -> durable outbox -> webhook 200, as fast
// as it goes (throughput; latency then includes queueing).
func BenchmarkEndToEndWebhook(b *testing.B) {
	for range b.N {
		e2eRun(b, 50000, 0, nil)
	}
}

// BenchmarkEndToEndWebhookTraced: the same with every span recorded and
// exported (to a discarding exporter), for the cost of tracing.
func BenchmarkEndToEndWebhookTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}))
	defer tp.Shutdown(context.Background())
	for range b.N {
		e2eRun(b, 50000, 0, tp)
	}
}

type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkEndToEndWebhookAt1k: the same at 1000 events/s offered, for
// latency under a steady, unsaturated load.
func BenchmarkEndToEndWebhookAt1k(b *testing.B) {
	for range b.N {
		e2eRun(b, 3000, 1000, nil)
	}
}

// sinkRun emits n events through a node whose only sink is given by
// sinkYAML (named "bench") and reports events/s from the first emit until
// the sink confirmed them all (publisher confirm, Kafka acks=all).
func sinkRun(b *testing.B, n int, sinkYAML string) {
	b.StopTimer()
	node := testutil.StartNode(b, "sinks:\n"+sinkYAML, nil)
	pub := node.Publisher(b)
	data := []byte(`{"name":"gv1","note":"` + fmt.Sprintf("%0120d", 0) + `"}`)
	b.StartTimer()
	start := time.Now()
	var last *outbox.Pending
	for i := range n {
		pe, err := pub.EmitAsync(context.Background(), event.Envelope{Type: "VOLUME_CREATE", Key: fmt.Sprintf("gv%d", i%64), Data: data})
		if err != nil {
			b.Fatal(err)
		}
		last = pe
	}
	if _, err := last.Wait(context.Background()); err != nil {
		b.Fatal(err)
	}
	loop := node.Loop("bench")
	testutil.Eventually(b, 5*time.Minute, func() bool { return loop.Stats().Delivered.Load() >= uint64(n) }, "all %d events confirmed", n)
	b.StopTimer()
	if dl := loop.Stats().DeadLettered.Load(); dl != 0 {
		b.Fatalf("%d events dead-lettered", dl)
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkEndToEndAMQP: emit -> outbox -> RabbitMQ (persistent, publisher
// confirms; the window is the sink's concurrency, 256).
func BenchmarkEndToEndAMQP(b *testing.B) {
	for range b.N {
		exchange, _, _ := testutil.AMQPQueue(b, "bench")
		sinkRun(b, 30000, fmt.Sprintf("  - name: bench\n    type: amqp\n    url: %s\n    exchange: %s\n    concurrency: 256\n", testutil.AMQPURL(), exchange))
	}
}

// BenchmarkEndToEndKafka: emit -> outbox -> Kafka protocol (kfake, acks=all,
// batches up to the sink's concurrency, 256).
func BenchmarkEndToEndKafka(b *testing.B) {
	for range b.N {
		addr := testutil.StartKafka(b, "bench")
		sinkRun(b, 50000, fmt.Sprintf("  - name: bench\n    type: kafka\n    brokers: [%s]\n    topic: bench\n    concurrency: 256\n", addr))
	}
}

// BenchmarkOrderedByKey: 20,000 events through a sink with ordering: key,
// spread over 1, 8 or 64 keys: throughput grows with the number of keys
// (one event per key at a time), not with concurrency alone.
func BenchmarkOrderedByKey(b *testing.B) {
	for _, keys := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				rcv := testutil.NewReceiver(b)
				node := testutil.StartNode(b, "sinks:\n  - name: bench\n    type: webhook\n    url: "+rcv.URL()+"\n    concurrency: 64\n    ordering: key\n", nil)
				pub := node.Publisher(b)
				const n = 20000
				b.StartTimer()
				start := time.Now()
				var last *outbox.Pending
				for i := range n {
					pe, err := pub.EmitAsync(context.Background(), event.Envelope{Type: "VOLUME_SET", Key: fmt.Sprintf("k%d", i%keys)})
					if err != nil {
						b.Fatal(err)
					}
					last = pe
				}
				if _, err := last.Wait(context.Background()); err != nil {
					b.Fatal(err)
				}
				testutil.Eventually(b, 5*time.Minute, func() bool { return rcv.Distinct() >= n }, "all delivered")
				b.StopTimer()
				b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
				b.ReportMetric(0, "ns/op")
			}
		})
	}
}

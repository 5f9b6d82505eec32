package outbox_test

import (
	"context"
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
)

// payload256 makes an event of about 256 bytes once encoded.
var payload256 = json.RawMessage(`{"name":"` + strings.Repeat("v", 120) + `"}`)

// BenchmarkEmitDurable measures emit with fsync before every
// acknowledgement: one producer waiting for each event, then 64 concurrent
// producers whose events the publisher groups into shared fsyncs.
func BenchmarkEmitDurable(b *testing.B) {
	for _, producers := range []int{1, 64} {
		b.Run(map[int]string{1: "producers=1", 64: "producers=64"}[producers], func(b *testing.B) {
			p := benchPublisher(b)
			b.SetParallelism(max(producers/runtime.GOMAXPROCS(0), 1))
			b.ResetTimer()
			runProducers(b, producers, func() error {
				_, err := p.Emit(context.Background(), event.Envelope{Type: "VOLUME_CREATE", Data: payload256})
				return err
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkEmitAsync measures one producer streaming events without
// waiting for each (as emit --file does), fsync before acknowledgement.
func BenchmarkEmitAsync(b *testing.B) {
	p := benchPublisher(b)
	b.ResetTimer()
	var (
		last *outbox.Pending
		err  error
	)
	for range b.N {
		if last, err = p.EmitAsync(context.Background(), event.Envelope{Type: "VOLUME_CREATE", Data: payload256}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := last.Wait(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func runProducers(b *testing.B, producers int, emit func() error) {
	if producers == 1 {
		for range b.N {
			if err := emit(); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := emit(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchPublisher starts a durable outbox with one consumer (so events are
// kept) and returns a publisher on it.
func benchPublisher(b *testing.B) *outbox.Publisher {
	srv, js := testutil.StartOutbox(b, outbox.Limits{})
	withSinkB(b, js)
	p, err := outbox.Dial(context.Background(), srv.ClientURL(), 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	return p
}

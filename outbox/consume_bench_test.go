package outbox_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
)

// BenchmarkConsumeTypes fetches and acknowledges a stored backlog through
// a consumer filtered by subject as sinks' consumers were (every event plus
// the sink's own retries and replays) and through one that reads the whole
// outbox, as they do now (outbox.ForSink), with the events spread over 1
// or 100 types (Gluster defines about 100). One op is one event.
func BenchmarkConsumeTypes(b *testing.B) {
	for _, types := range []int{1, 100} {
		for _, filtered := range []bool{true, false} {
			b.Run(fmt.Sprintf("types=%d/filtered=%t", types, filtered), func(b *testing.B) {
				srv, js := testutil.StartOutbox(b, outbox.Limits{})
				ctx := context.Background()
				// Stored as emit stores them, in atomic batches, so that a
				// large b.N takes seconds to set up, not minutes.
				pub := dialB(b, srv.ClientURL())
				var last *outbox.Pending
				for i := range b.N {
					e := event.Envelope{Type: "T" + strconv.Itoa(i%types), Data: payload256}
					var err error
					if last, err = pub.EmitAsync(ctx, e); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := last.Wait(ctx); err != nil {
					b.Fatal(err)
				}
				if n := stored(b, js); n != uint64(b.N) {
					b.Fatalf("%d events stored, want %d", n, b.N)
				}
				cfg := jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000}
				if filtered {
					cfg.FilterSubjects = []string{outbox.EventSubject(">"), "courier.replay.bench.>"}
				}
				cons, err := js.CreateConsumer(ctx, outbox.StreamEvents, cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for got := 0; got < b.N; {
					batch, err := cons.Fetch(min(b.N-got, 256), jetstream.FetchMaxWait(5*time.Second))
					if err != nil {
						b.Fatal(err)
					}
					for m := range batch.Messages() {
						_ = m.Ack()
						got++
					}
					if err := batch.Error(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

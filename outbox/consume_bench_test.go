package outbox_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
				nc, err := nats.Connect(srv.ClientURL())
				if err != nil {
					b.Fatal(err)
				}
				defer nc.Close()
				pub, err := jetstream.New(nc)
				if err != nil {
					b.Fatal(err)
				}
				data := make([]byte, 256)
				for i := range b.N {
					if _, err := pub.PublishAsync(outbox.EventSubject("T"+strconv.Itoa(i%types)), data); err != nil {
						b.Fatal(err)
					}
					if i%1000 == 999 || i == b.N-1 { // stay under the client's limit of pending publishes
						select {
						case <-pub.PublishAsyncComplete():
						case <-time.After(time.Minute):
							b.Fatal("backlog not stored")
						}
					}
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

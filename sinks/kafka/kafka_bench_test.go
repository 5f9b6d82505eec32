package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/sinks/kafka"
	"github.com/courierhq/courier/sinks/sinktest"
)

// BenchmarkKafkaSend measures 64 concurrent Sends, as a delivery loop with
// concurrency 64 makes them, against kfake with the default configuration
// (acks=all, batch_timeout 2ms). Every event has its own key: on one
// partition all 64 share each request; on eight the Writer batches per
// partition, so batches hold about 8 and wait for batch_timeout.
func BenchmarkKafkaSend(b *testing.B) {
	const senders = 64
	for _, partitions := range []int{1, 8} {
		b.Run(fmt.Sprintf("partitions=%d", partitions), func(b *testing.B) {
			_, addr := startCluster(b, kfake.SeedTopics(int32(partitions), "bench"))
			s := newSink(b, kafka.Config{Brokers: []string{addr}, Topic: "bench"}, event.FormatCourier, senders)
			events := make([]*event.Envelope, 4096)
			for i := range events {
				events[i] = sinktest.NewEvent(fmt.Sprintf("bench-%05d", i))
				events[i].Key = "" // keyed by id: spread over the partitions
			}
			send(b, s, events[0]) // metadata and connections, outside the timing
			ctx := context.Background()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						if err := s.Send(ctx, events[i%int64(len(events))]); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

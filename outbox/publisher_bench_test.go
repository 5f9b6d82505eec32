package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

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
	benchEmitDurable(b, func(b *testing.B) *outbox.Publisher { return benchPublisher(b) })
}

// BenchmarkEmitDurableCluster is BenchmarkEmitDurable against an outbox
// replicated on three clustered servers in this process (all on this
// machine's cores and disk). Replicated, JetStream stages an atomic batch
// in memory instead of in a store of its own on disk (see
// BenchmarkAtomicBatch), so group commit gains more here.
func BenchmarkEmitDurableCluster(b *testing.B) {
	urls, js := testutil.StartOutboxCluster(b, outbox.Limits{})
	withSinkB(b, js)
	benchEmitDurable(b, func(b *testing.B) *outbox.Publisher { return dialB(b, urls[0]) })
}

func benchEmitDurable(b *testing.B, publisher func(*testing.B) *outbox.Publisher) {
	for _, producers := range []int{1, 64} {
		b.Run(map[int]string{1: "producers=1", 64: "producers=64"}[producers], func(b *testing.B) {
			p := publisher(b)
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

// BenchmarkAtomicBatch commits JetStream atomic batches of a fixed size one
// after another on a single-node outbox (fsync before acknowledgement),
// without the Publisher, to measure what a batch costs. On one node
// JetStream stages each batch in a file store of its own (directories,
// metadata files and fsyncs, then removed), a fixed cost per batch that
// bounds how much group commit can gain when producers wait for each event.
func BenchmarkAtomicBatch(b *testing.B) {
	for _, size := range []int{1, 16, 64, 256, 1000} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			srv, js := testutil.StartOutbox(b, outbox.Limits{})
			withSinkB(b, js)
			nc, err := nats.Connect(srv.ClientURL())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			data := make([]byte, 256)
			b.ResetTimer()
			for n := range b.N {
				if err := commitBatch(nc, outbox.EventSubject("BENCH"), fmt.Sprintf("b%d", n), size, data); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/batch")
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkAtomicBatchStreams asks whether an outbox split into several
// streams (partitions) would store more events for producers that wait:
// each writer commits batches back to back to its stream, all streams at
// once. streams x size is how many events wait at a time; with 64 waiting
// producers, streams=4/size=16 is what four partitions would see.
func BenchmarkAtomicBatchStreams(b *testing.B) {
	for _, c := range []struct{ streams, size int }{{1, 64}, {2, 32}, {4, 16}, {8, 8}, {4, 64}} {
		b.Run(fmt.Sprintf("streams=%d/size=%d", c.streams, c.size), func(b *testing.B) {
			srv, js := testutil.StartOutbox(b, outbox.Limits{})
			ctx := context.Background()
			conns := make([]*nats.Conn, c.streams)
			for i := range conns {
				name := "PART" + strconv.Itoa(i)
				if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
					Name: name, Subjects: []string{name + ".>"}, Storage: jetstream.FileStorage,
					AllowAtomicPublish: true, Duplicates: 2 * time.Minute,
				}); err != nil {
					b.Fatal(err)
				}
				nc, err := nats.Connect(srv.ClientURL())
				if err != nil {
					b.Fatal(err)
				}
				defer nc.Close()
				conns[i] = nc
			}
			data := make([]byte, 256)
			batches := b.N/c.streams + 1
			var g errgroup.Group
			b.ResetTimer()
			for i, nc := range conns {
				g.Go(func() error {
					for n := range batches {
						if err := commitBatch(nc, "PART"+strconv.Itoa(i)+".e", fmt.Sprintf("w%d-b%d", i, n), c.size, data); err != nil {
							return err
						}
					}
					return nil
				})
			}
			if err := g.Wait(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(batches*c.streams*c.size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// commitBatch stores size messages on subject as one atomic batch (a plain
// publish for one) and waits for the acknowledgement.
func commitBatch(nc *nats.Conn, subject, id string, size int, data []byte) error {
	for i := 1; i <= size; i++ {
		m := nats.NewMsg(subject)
		m.Data = data
		m.Header.Set(nats.MsgIdHdr, id+"-"+strconv.Itoa(i))
		if size > 1 {
			m.Header.Set("Nats-Batch-Id", id)
			m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i))
		}
		if i < size {
			if err := nc.PublishMsg(m); err != nil {
				return err
			}
			continue
		}
		if size > 1 {
			m.Header.Set("Nats-Batch-Commit", "1")
		}
		resp, err := nc.RequestMsg(m, 10*time.Second)
		if err != nil {
			return err
		}
		if strings.Contains(string(resp.Data), `"error"`) {
			return fmt.Errorf("batch %s: %s", id, resp.Data)
		}
	}
	return nil
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
	return dialB(b, srv.ClientURL())
}

func dialB(b *testing.B, url string) *outbox.Publisher {
	p, err := outbox.Dial(context.Background(), url, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	return p
}

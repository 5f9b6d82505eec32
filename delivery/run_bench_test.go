package delivery

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/netguard"
	"github.com/courierhq/courier/retry"
	"github.com/courierhq/courier/sinks/webhook"
)

// memConsumer hands out stored messages from memory, as many as Fetch asks
// for, until total have been handed out.
type memConsumer struct {
	jetstream.Consumer // only Fetch is used
	data               []byte
	headers            nats.Header
	left               atomic.Int64
	acked              *atomic.Int64
}

type countedMsg struct {
	storedMsg
	acked *atomic.Int64
}

func (m *countedMsg) Ack() error { m.acked.Add(1); return nil }

type memBatch struct{ ch chan jetstream.Msg }

func (b memBatch) Messages() <-chan jetstream.Msg { return b.ch }
func (b memBatch) Error() error                   { return nil }

func (c *memConsumer) Fetch(n int, _ ...jetstream.FetchOpt) (jetstream.MessageBatch, error) {
	ch := make(chan jetstream.Msg, n)
	for range n {
		if c.left.Add(-1) < 0 {
			break
		}
		ch <- &countedMsg{storedMsg: storedMsg{data: c.data, headers: c.headers, md: jetstream.MsgMetadata{NumDelivered: 1, Timestamp: time.Now()}}, acked: c.acked}
	}
	close(ch)
	return memBatch{ch}, nil
}

// BenchmarkRunWebhook is the loop's dispatch around real attempts: Run
// fetching batches (from memory, so the outbox is not measured) and
// delivering each event to a real webhook sink, over loopback HTTP to a
// receiver that answers 204, 16 at a time. It is where a goroutine per
// event, its start and its stack growing as the HTTP client's frames pile
// up, shows; BenchmarkAttempt runs on one goroutine and does not see it.
func BenchmarkRunWebhook(b *testing.B) {
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	loopback, err := netguard.ParseAllow([]string{"127.0.0.0/8"})
	if err != nil {
		b.Fatal(err)
	}
	sink, err := webhook.New(webhook.Config{URL: rcv.URL}, event.FormatCourier, 16, "bench",
		webhook.WithGuard(netguard.NewGuard(netguard.Policy{Allow: loopback})))
	if err != nil {
		b.Fatal(err)
	}
	e := event.Envelope{Type: "order.created", Source: "shop", Data: []byte(`{"order":12345,"total":"99.90"}`)}
	if err := e.Complete("n1"); err != nil {
		b.Fatal(err)
	}
	data, err := json.Marshal(&e)
	if err != nil {
		b.Fatal(err)
	}
	var acked atomic.Int64
	cons := &memConsumer{data: data, headers: nats.Header{}, acked: &acked}
	cons.left.Store(int64(b.N))
	l, err := NewLoop(Config{Name: "bench", Sink: sink, Policy: retry.DefaultPolicy(), Concurrency: 16,
		Timeout: 5 * time.Second, AckWait: 5 * time.Second}, cons, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.ReportAllocs()
	b.ResetTimer()
	go func() { defer close(done); _ = l.Run(ctx) }()
	for acked.Load() < int64(b.N) {
		time.Sleep(time.Millisecond) // a benchmark's own wait, not a test's synchronisation
	}
	b.StopTimer()
	cancel()
	<-done
}

package delivery_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/delivery"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
)

// fetchOne waits up to within for the consumer's next event.
func fetchOne(t *testing.T, c jetstream.Consumer, within time.Duration) jetstream.Msg {
	t.Helper()
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(within))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		return m
	}
	return nil
}

func TestShortRetryIsRedeliveredAfterItsDelayNotTheAckWait(t *testing.T) {
	ctx := context.Background()
	_, js := testutil.StartOutbox(t, outbox.Limits{})
	const ackWait = 30 * time.Second
	c, err := delivery.EnsureConsumer(ctx, js, "redo", ackWait, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, outbox.EventSubject("T"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	var r delivery.Redeliveries
	first := fetchOne(t, c, 5*time.Second)
	if first == nil {
		t.Fatal("no event")
	}
	start := time.Now()
	if err := r.Schedule(first, 200*time.Millisecond, ackWait); err != nil {
		t.Fatal(err)
	}
	if early := fetchOne(t, c, 100*time.Millisecond); early != nil {
		t.Fatalf("redelivered after %s, before its delay", time.Since(start))
	}
	again := fetchOne(t, c, 5*time.Second)
	if again == nil {
		t.Fatalf("not redelivered within 5s of a 200ms delay (ack wait %s)", ackWait)
	}
	md, _ := again.Metadata()
	if md.NumDelivered != 2 {
		t.Errorf("delivery count %d, want 2", md.NumDelivered)
	}

	// Stopping hands a waiting event back with its remaining delay.
	if err := r.Schedule(again, time.Second, ackWait); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	if m := fetchOne(t, c, 5*time.Second); m == nil {
		t.Fatal("event held at stop was not handed back")
	}
}

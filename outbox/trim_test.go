package outbox_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
)

// TestTrimWaitsForTheEventLogWithinItsBound: a sink consumer that
// confirmed everything and an event log consumer that logged nothing. The
// outbox keeps the events for the log while it is within the bound, and
// trims them once the log is past it, naming the log as behind.
func TestTrimWaitsForTheEventLogWithinItsBound(t *testing.T) {
	ctx := context.Background()
	srv, js := testutil.StartOutbox(t, outbox.Limits{})
	pub, err := outbox.Dial(ctx, srv.ClientURL(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	consumer := func(name string) jetstream.Consumer {
		c, err := js.CreateOrUpdateConsumer(ctx, outbox.StreamEvents, jetstream.ConsumerConfig{
			Durable: name, AckPolicy: jetstream.AckAllPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	sink := consumer(outbox.ConsumerPrefix + "audit")
	logName := outbox.LogConsumer("node-b", false)
	consumer(logName)
	for range 10 {
		if _, err := pub.Emit(ctx, event.Envelope{Type: "VOLUME_CREATE"}); err != nil {
			t.Fatal(err)
		}
	}
	batch, err := sink.Fetch(10, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var last jetstream.Msg
	for m := range batch.Messages() {
		last = m
	}
	if last == nil {
		t.Fatal("the sink consumer got nothing")
	}
	if err := last.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := func() uint64 {
		s, err := js.Stream(ctx, outbox.StreamEvents)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().State.Msgs
	}

	res, err := outbox.Trim(ctx, js, outbox.LogBound{MaxLag: time.Hour, MaxBytes: 1 << 30})
	if err != nil || res.Trimmed != 0 || len(res.Behind) != 0 || msgs() != 10 {
		t.Fatalf("within the bound: %+v, %v, %d events left; want nothing trimmed", res, err, msgs())
	}
	// Past the age bound (the oldest unlogged event is older than 1ns).
	res, err = outbox.Trim(ctx, js, outbox.LogBound{MaxLag: time.Nanosecond})
	if err != nil || res.Trimmed != 10 || !slices.Equal(res.Behind, []string{logName}) || msgs() != 0 {
		t.Fatalf("past the bound: %+v, %v, %d events left; want all 10 trimmed and %s behind", res, err, msgs(), logName)
	}
}

func TestTrimBoundsTheLogByBytes(t *testing.T) {
	ctx := context.Background()
	srv, js := testutil.StartOutbox(t, outbox.Limits{})
	pub, err := outbox.Dial(ctx, srv.ClientURL(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for _, name := range []string{outbox.LogConsumer("n", true)} {
		if _, err := js.CreateOrUpdateConsumer(ctx, outbox.StreamEvents, jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckAllPolicy}); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		if _, err := pub.Emit(ctx, event.Envelope{Type: "VOLUME_CREATE"}); err != nil {
			t.Fatal(err)
		}
	}
	// Only the log's consumer: held by bytes beyond 1 byte, it stops holding.
	res, err := outbox.Trim(ctx, js, outbox.LogBound{MaxBytes: 1})
	if err != nil || len(res.Behind) != 1 || res.Trimmed != 0 {
		t.Fatalf("Trim = %+v, %v; want the log behind and nothing trimmed (no other consumer holds a floor)", res, err)
	}
}

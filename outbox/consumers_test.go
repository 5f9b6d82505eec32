package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
)

func TestForSink(t *testing.T) {
	for _, c := range []struct {
		subject string
		want    bool
	}{
		{outbox.EventSubject("VOLUME_CREATE"), true},
		{outbox.EventSubject("VOLUME.CREATE"), true},
		{"courier.replay.hook.VOLUME_CREATE", true},
		{"courier.replay.hook.VOLUME.CREATE", true},
		{"courier.replay.hook-2.VOLUME_CREATE", false},
		{"courier.replay.ho.VOLUME_CREATE", false},
	} {
		if got := outbox.ForSink(c.subject, "hook"); got != c.want {
			t.Errorf("ForSink(%q, hook) = %t, want %t", c.subject, got, c.want)
		}
	}
}

// A consumer made by an earlier version, filtered by subject, reads the
// whole outbox once set up again, from where it was.
func TestEnsureConsumerDropsTheSubjectFilterAndKeepsThePosition(t *testing.T) {
	srv, js := testutil.StartOutbox(t, outbox.Limits{})
	ctx := context.Background()
	old, err := js.CreateConsumer(ctx, outbox.StreamEvents, jetstream.ConsumerConfig{
		Durable: outbox.ConsumerName("hook"), AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: -1,
		FilterSubjects: []string{outbox.EventSubject(">"), "courier.replay.hook.>"},
	})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := outbox.Dial(ctx, srv.ClientURL(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	first, err := pub.Emit(ctx, event.Envelope{Type: "VOLUME_CREATE"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := pub.Emit(ctx, event.Envelope{Type: "VOLUME_DELETE"})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := old.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if id := m.Headers().Get("Nats-Msg-Id"); id != first {
			t.Fatalf("first message %s, want %s", id, first)
		}
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}

	cons, err := outbox.EnsureConsumer(ctx, js, "hook", time.Minute, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if f := cons.CachedInfo().Config.FilterSubjects; len(f) != 0 || cons.CachedInfo().Config.FilterSubject != "" {
		t.Fatalf("filter subjects %v, want none", f)
	}
	batch, err = cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for m := range batch.Messages() {
		got = m.Headers().Get("Nats-Msg-Id")
	}
	if got != second {
		t.Fatalf("after the update the consumer fetched %q, want the second event %s", got, second)
	}
}

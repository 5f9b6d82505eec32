package worker_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
)

// TestEmitReachesRabbitMQ runs the whole pipeline to a real RabbitMQ:
// CloudStack-style topic exchange, routing key = event type.
func TestEmitReachesRabbitMQ(t *testing.T) {
	exchange, ch, queue := testutil.AMQPQueue(t, "pipeline")
	n := testutil.StartNode(t, fmt.Sprintf(`sinks:
  - name: bus
    type: amqp
    url: %s
    exchange: %s
    routing_key: "{type}.{level}"
    concurrency: 32
`, testutil.AMQPURL(), exchange), nil)
	p := n.Publisher(t)
	want := map[string]bool{}
	for i := range 200 {
		want[emit(t, p, event.Envelope{Type: fmt.Sprintf("VOLUME_%d", i%3)})] = true
	}
	got := map[string]string{}
	testutil.Eventually(t, waitFor, func() bool {
		for {
			m, ok, err := ch.Get(queue, true)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if !ok {
				return len(got) == len(want)
			}
			got[m.MessageId] = m.RoutingKey
		}
	}, "200 events in the queue")
	for id := range want {
		if !strings.HasSuffix(got[id], ".INFO") || !strings.HasPrefix(got[id], "VOLUME_") {
			t.Errorf("event %s: routing key %q, want VOLUME_n.INFO", id, got[id])
		}
	}
	if s := n.Loop("bus").Stats(); s.Delivered.Load() != 200 || s.DeadLettered.Load() != 0 {
		t.Errorf("delivered %d, dead-lettered %d", s.Delivered.Load(), s.DeadLettered.Load())
	}
}

// TestUnroutableEventIsDeadLettered: an event no queue is bound for is not
// delivered, whatever the broker acknowledged.
func TestUnroutableEventIsDeadLettered(t *testing.T) {
	exchange, ch, _ := testutil.AMQPQueue(t, "unroutable")
	if err := ch.ExchangeDeclare(exchange+"-empty", "topic", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.ExchangeDelete(exchange+"-empty", false, false) })
	n := testutil.StartNode(t, fmt.Sprintf("sinks:\n  - name: bus\n    type: amqp\n    url: %s\n    exchange: %s-empty\n", testutil.AMQPURL(), exchange), nil)
	id := emit(t, n.Publisher(t), event.Envelope{Type: "VOLUME_CREATE"})
	testutil.Eventually(t, waitFor, func() bool { return n.Loop("bus").Stats().DeadLettered.Load() == 1 }, "dead-lettered")
	if dl := deadLetters(t, n, "bus"); len(dl) != 1 || dl[0].Event.ID != id || !strings.Contains(dl[0].LastError, "unroutable") {
		t.Errorf("dead letters = %+v", dl)
	}
}

// TestEmitReachesKafka runs the whole pipeline to a Kafka-protocol broker,
// with the event id and type in headers.
func TestEmitReachesKafka(t *testing.T) {
	addr := testutil.StartKafka(t, "courier.VOLUME_CREATE", "courier.PEER_ATTACH")
	n := testutil.StartNode(t, fmt.Sprintf(`sinks:
  - name: log
    type: kafka
    brokers: [%s]
    topic: "courier.{type}"
    concurrency: 32
`, addr), nil)
	p := n.Publisher(t)
	want := map[string]string{}
	for i := range 100 {
		typ := []string{"VOLUME_CREATE", "PEER_ATTACH"}[i%2]
		want[emit(t, p, event.Envelope{Type: typ, Key: fmt.Sprintf("k%d", i%5)})] = typ
	}
	testutil.Eventually(t, waitFor, func() bool { return n.Loop("log").Stats().Delivered.Load() == 100 }, "100 delivered")
	got := map[string]string{}
	for _, topic := range []string{"courier.VOLUME_CREATE", "courier.PEER_ATTACH"} {
		for _, m := range testutil.KafkaMessages(t, addr, topic) {
			for _, h := range m.Headers {
				if h.Key == "courier-event-id" {
					got[string(h.Value)] = strings.TrimPrefix(topic, "courier.")
				}
			}
		}
	}
	for id, typ := range want {
		if got[id] != typ {
			t.Errorf("event %s (%s) found in topic %q", id, typ, got[id])
		}
	}
}

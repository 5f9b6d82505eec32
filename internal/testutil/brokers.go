package testutil

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// AMQPURL is the RabbitMQ the tests use: COURIER_TEST_AMQP_URL, or the
// machine's broker at amqp://guest:guest@127.0.0.1:5672/.
func AMQPURL() string {
	if u := os.Getenv("COURIER_TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// AMQPQueue declares a fresh exchange (topic) and a queue bound to it with
// "#", deleted when the test ends, and returns the exchange name and a
// channel to read the queue with. Without a broker the test is skipped,
// except in CI, where a missing broker fails it.
func AMQPQueue(t testing.TB, name string) (exchange string, ch *amqp091.Channel, queue string) {
	t.Helper()
	conn, err := amqp091.DialConfig(AMQPURL(), amqp091.Config{Dial: amqp091.DefaultDial(5 * time.Second)})
	if err != nil {
		redacted := "(invalid url)"
		if u, perr := url.Parse(AMQPURL()); perr == nil {
			redacted = u.Redacted()
		}
		Require(t, fmt.Errorf("RabbitMQ at %s is unreachable: %w", redacted, err))
	}
	t.Cleanup(func() { _ = conn.Close() })
	if ch, err = conn.Channel(); err != nil {
		t.Fatalf("amqp channel: %v", err)
	}
	suffix := time.Now().Format("150405.000000000")
	exchange, queue = "courier-test-"+name+"-"+suffix, "courier-test-"+name+"-q-"+suffix
	if err := ch.ExchangeDeclare(exchange, "topic", false, true, false, false, nil); err != nil {
		t.Fatalf("declare exchange: %v", err)
	}
	if _, err := ch.QueueDeclare(queue, false, false, false, false, nil); err != nil {
		t.Fatalf("declare queue: %v", err)
	}
	if err := ch.QueueBind(queue, "#", exchange, false, nil); err != nil {
		t.Fatalf("bind queue: %v", err)
	}
	t.Cleanup(func() {
		_, _ = ch.QueueDelete(queue, false, false, false)
		_ = ch.ExchangeDelete(exchange, false, false)
	})
	return exchange, ch, queue
}

// StartKafka starts kfake, an in-process broker speaking the Kafka wire
// protocol, with the topics given (one partition each), and returns its
// address. It stops when the test ends.
func StartKafka(t testing.TB, topics ...string) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics...))
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// KafkaMessages reads every message of a one-partition topic so far.
func KafkaMessages(t testing.TB, addr, topic string) []kafkago.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kafkago.DialLeader(ctx, "tcp", addr, topic, 0)
	if err != nil {
		t.Fatalf("dial kafka: %v", err)
	}
	defer conn.Close()
	last, err := conn.ReadLastOffset()
	if err != nil {
		t.Fatalf("last offset: %v", err)
	}
	var out []kafkago.Message
	if _, err := conn.Seek(0, kafkago.SeekAbsolute); err != nil {
		t.Fatalf("seek: %v", err)
	}
	for int64(len(out)) < last {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		m, err := conn.ReadMessage(10 << 20)
		if err != nil {
			t.Fatalf("read kafka: %v", err)
		}
		out = append(out, m)
	}
	return out
}

package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Scenario (5) delivers to a real RabbitMQ and to a Kafka broker; the
// harness checks receipt by consuming from the broker, with a queue or
// topic of its own for every run so that runs never mix.

// Headers the two systems put the event id in, on both brokers.
const (
	courierKafkaIDHeader = "courier-event-id"        // Courier's Kafka sink
	watermillIDHeader    = "_watermill_message_uuid" // watermill-amqp's and watermill-kafka's default marshalers
)

// defaultAMQPURL is the broker Courier's own tests use.
func defaultAMQPURL() string {
	if u := os.Getenv("COURIER_TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid url)"
	}
	return u.Redacted()
}

// probeAMQP connects once and returns the broker's product and version,
// e.g. "RabbitMQ 3.10.8".
func probeAMQP(uri string) (string, error) {
	conn, err := amqp091.DialConfig(uri, amqp091.Config{Dial: amqp091.DefaultDial(5 * time.Second)})
	if err != nil {
		return "", fmt.Errorf("RabbitMQ at %s: %w", redactURL(uri), err)
	}
	defer conn.Close()
	product, _ := conn.Properties["product"].(string)
	version, _ := conn.Properties["version"].(string)
	return strings.TrimSpace(product + " " + version), nil
}

// amqpEndpoint is a durable topic exchange of the run's own, with a
// durable queue bound to it with "#"; a consumer on the queue counts every
// message that arrives. Courier's sink and Watermill's publisher both
// publish persistent messages to the exchange with publisher confirms.
type amqpEndpoint struct {
	*tally
	uri      string
	exchange string
	queue    string
	conn     *amqp091.Connection
	ch       *amqp091.Channel
	done     chan struct{}
}

func newAMQPEndpoint(uri, name string, n int) (*amqpEndpoint, error) {
	conn, err := amqp091.DialConfig(uri, amqp091.Config{Dial: amqp091.DefaultDial(5 * time.Second)})
	if err != nil {
		return nil, fmt.Errorf("amqp endpoint: connect to %s: %w", redactURL(uri), err)
	}
	e := &amqpEndpoint{tally: newTally(n), uri: uri, exchange: name, queue: name + "-q", conn: conn, done: make(chan struct{})}
	if err := e.setUp(); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *amqpEndpoint) setUp() error {
	var err error
	if e.ch, err = e.conn.Channel(); err != nil {
		return fmt.Errorf("amqp endpoint: channel: %w", err)
	}
	// Durable, as Courier's sink declares it (declare: true); Watermill's
	// publisher declares it again with the same settings.
	if err := e.ch.ExchangeDeclare(e.exchange, "topic", true, false, false, false, nil); err != nil {
		return fmt.Errorf("amqp endpoint: declare exchange %s: %w", e.exchange, err)
	}
	if _, err := e.ch.QueueDeclare(e.queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("amqp endpoint: declare queue %s: %w", e.queue, err)
	}
	if err := e.ch.QueueBind(e.queue, "#", e.exchange, false, nil); err != nil {
		return fmt.Errorf("amqp endpoint: bind queue %s: %w", e.queue, err)
	}
	// Automatic acks: the consumer is the harness, and it should cost the
	// broker as little as possible (the same for both systems).
	deliveries, err := e.ch.Consume(e.queue, "bench", true, true, false, false, nil)
	if err != nil {
		return fmt.Errorf("amqp endpoint: consume %s: %w", e.queue, err)
	}
	go func() {
		defer close(e.done)
		for d := range deliveries {
			id := d.MessageId // Courier's sink sets it to the event id
			if id == "" {
				id, _ = d.Headers[watermillIDHeader].(string)
			}
			e.record(id)
		}
	}()
	return nil
}

func (e *amqpEndpoint) target() sinkTarget {
	return sinkTarget{Kind: "amqp", URL: e.uri, Exchange: e.exchange}
}

func (e *amqpEndpoint) refusedCount() int64 { return 0 }

// close deletes the queue and the exchange, so that nothing of the run is
// left on the broker.
func (e *amqpEndpoint) close() {
	if e.ch != nil {
		_, _ = e.ch.QueueDelete(e.queue, false, false, false)
		_ = e.ch.ExchangeDelete(e.exchange, false, false)
	}
	_ = e.conn.Close()
	if e.ch != nil {
		<-e.done
	}
}

// kafkaEndpoint is a topic of the run's own (one partition) and a
// consumer reading it from the start.
type kafkaEndpoint struct {
	*tally
	brokers []string
	topic   string
	cl      *kgo.Client
	cancel  context.CancelFunc
	done    chan struct{}
}

func newKafkaEndpoint(ctx context.Context, brokers []string, topic string, n int) (*kafkaEndpoint, error) {
	if err := createTopic(ctx, brokers, topic); err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(time.Second))
	if err != nil {
		return nil, fmt.Errorf("kafka endpoint: client: %w", err)
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e := &kafkaEndpoint{tally: newTally(n), brokers: brokers, topic: topic, cl: cl, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(e.done)
		for pctx.Err() == nil {
			fs := cl.PollFetches(pctx)
			fs.EachRecord(func(r *kgo.Record) {
				for _, h := range r.Headers {
					if h.Key == courierKafkaIDHeader || h.Key == watermillIDHeader {
						e.record(string(h.Value))
						return
					}
				}
				e.unknown.Add(1)
			})
		}
	}()
	return e, nil
}

func (e *kafkaEndpoint) target() sinkTarget {
	return sinkTarget{Kind: "kafka", Brokers: e.brokers, Topic: e.topic}
}

func (e *kafkaEndpoint) refusedCount() int64 { return 0 }

// close stops the consumer and deletes the topic, so that the broker does
// not keep every run's events in memory.
func (e *kafkaEndpoint) close() {
	e.cancel()
	<-e.done
	e.cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = deleteTopic(ctx, e.brokers, e.topic)
}

// createTopic creates a topic with one partition and waits until the
// broker's metadata shows it with a leader.
func createTopic(ctx context.Context, brokers []string, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return fmt.Errorf("kafka: client: %w", err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, 1, 1
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 10000
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("kafka: create topic %s: %w", topic, err)
	}
	for _, t := range resp.Topics {
		if err := kerrOf(t.ErrorCode); err != nil {
			return fmt.Errorf("kafka: create topic %s: %w", topic, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mreq := kmsg.NewPtrMetadataRequest()
		mt := kmsg.NewMetadataRequestTopic()
		mt.Topic = kmsg.StringPtr(topic)
		mreq.Topics = append(mreq.Topics, mt)
		mresp, err := mreq.RequestWith(ctx, cl)
		if err == nil && len(mresp.Topics) == 1 && mresp.Topics[0].ErrorCode == 0 &&
			len(mresp.Topics[0].Partitions) == 1 && mresp.Topics[0].Partitions[0].Leader >= 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kafka: topic %s has no leader within 10s (last error: %v)", topic, err)
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("kafka: wait for topic %s: %w", topic, ctx.Err())
		case <-t.C:
		}
	}
}

func deleteTopic(ctx context.Context, brokers []string, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return fmt.Errorf("kafka: client: %w", err)
	}
	defer cl.Close()
	req := kmsg.NewPtrDeleteTopicsRequest()
	req.TopicNames = []string{topic}
	dt := kmsg.NewDeleteTopicsRequestTopic()
	dt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, dt)
	req.TimeoutMillis = 10000
	if _, err := req.RequestWith(ctx, cl); err != nil {
		return fmt.Errorf("kafka: delete topic %s: %w", topic, err)
	}
	return nil
}

type kafkaCodeError int16

func (e kafkaCodeError) Error() string { return fmt.Sprintf("kafka error code %d", int16(e)) }

func kerrOf(code int16) error {
	if code == 0 {
		return nil
	}
	return kafkaCodeError(code)
}

// kafkaBroker is kfake, an in-process Kafka (the one Courier's tests use),
// run in a process of its own so that its CPU and memory are charged to
// neither system. It serves every run of the comparison; each run makes
// and deletes its own topic.
type kafkaBroker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

// startKafkaBroker starts `compare -kafka-broker` and reads the address
// it listens on from its first line of output.
func startKafkaBroker(exe string) (*kafkaBroker, error) {
	cmd := exec.Command(exe, "-kafka-broker")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("kafka broker: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("kafka broker: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("kafka broker: start: %w", err)
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	t := time.NewTimer(20 * time.Second)
	defer t.Stop()
	b := &kafkaBroker{cmd: cmd, stdin: stdin}
	select {
	case addr, ok := <-line:
		if !ok || addr == "" {
			b.stop()
			return nil, errors.New("kafka broker: exited before giving its address")
		}
		b.addr = addr
		return b, nil
	case <-t.C:
		b.stop()
		return nil, errors.New("kafka broker: no address within 20s")
	}
}

// stop closes the broker's standard input, which makes it exit, and waits
// for it.
func (b *kafkaBroker) stop() {
	_ = b.stdin.Close()
	done := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(done) }()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		_ = b.cmd.Process.Kill()
		<-done
	}
}

// serveKafka is the -kafka-broker process: one kfake broker on a loopback
// port, until standard input closes (the parent exits or stops it).
func serveKafka() int {
	c, err := kfake.NewCluster(kfake.NumBrokers(1)) // listens on 127.0.0.1
	if err != nil {
		fmt.Fprintf(os.Stderr, "compare: kafka broker: %v\n", err)
		return 1
	}
	defer c.Close()
	c.ControlKey(int16(kmsg.Produce), normaliseLeaderEpoch)
	fmt.Println(c.ListenAddrs()[0])
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// normaliseLeaderEpoch makes kfake accept Sarama's produce requests, and
// so watermill-kafka's. Sarama writes 0 in a record batch's
// PartitionLeaderEpoch (bytes 12-15), where clients are meant to write -1;
// Kafka brokers overwrite the field when they append the batch, but kfake
// refuses anything but -1 as CORRUPT_MESSAGE, at every protocol version.
// This sets the field to -1 before kfake reads the request, as a broker
// would ignore it; the CRC starts at byte 21, so it still matches.
// kafka-go and franz-go already send -1: for them it changes nothing.
// It returns "not handled", so kfake then serves the request as usual.
func normaliseLeaderEpoch(r kmsg.Request) (kmsg.Response, error, bool) {
	if req, ok := r.(*kmsg.ProduceRequest); ok {
		for i := range req.Topics {
			for j := range req.Topics[i].Partitions {
				if rec := req.Topics[i].Partitions[j].Records; len(rec) > 16 && rec[16] == 2 { // magic 2
					binary.BigEndian.PutUint32(rec[12:16], 0xFFFFFFFF)
				}
			}
		}
	}
	return nil, nil, false
}

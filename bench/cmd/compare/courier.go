package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/sinks/builtin"
	"github.com/courierhq/courier/worker"
)

// sinkName is the one webhook sink of the Courier node.
const sinkName = "bench"

// courierSys is one Courier node: first the bare embedded outbox (streams
// and the sink's durable consumer, no delivery loop), then, once delivery
// starts, a full worker over the same data directory. Splitting it lets
// the emit-only and backlog scenarios store events while nothing delivers
// them, exactly as when the worker is down.
type courierSys struct {
	p   params
	log *slog.Logger
	dir string
	cfg *config.File
	srv *outbox.Server
	w   *worker.Worker
	pub *outbox.Publisher
	url string
}

func newCourier(p params) *courierSys {
	return &courierSys{p: p, log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
}

// configFor is the node's configuration: everything default (sync: always
// included) except the sink's concurrency and a retry schedule that starts
// at 100ms, the same as the Watermill pipeline's Retry middleware. The
// sink is a webhook, or Courier's AMQP sink (publisher confirms, persistent
// messages, mandatory; it declares the exchange durable) or Kafka sink
// (kafka-go, acks=all), each with its defaults otherwise.
func (c *courierSys) configFor(to sinkTarget) (*config.File, error) {
	var sink string
	switch to.Kind {
	case "webhook":
		sink = fmt.Sprintf("type: webhook\n    url: %s", to.URL)
	case "amqp":
		sink = fmt.Sprintf("type: amqp\n    url: %s\n    exchange: %s\n    declare: true", to.URL, to.Exchange)
	case "kafka":
		sink = fmt.Sprintf("type: kafka\n    brokers: [%s]\n    topic: %s", strings.Join(to.Brokers, ", "), to.Topic)
	default:
		return nil, fmt.Errorf("courier config: unknown sink kind %q", to.Kind)
	}
	yaml := fmt.Sprintf(`node_id: bench
data_dir: %s
log: {level: warn}
admin: {listen: "off"}
outbox:
  listen: 127.0.0.1:0
  sync: always
%s
event_log: {enabled: %t}
# The receivers run on this machine.
webhook_allow: [127.0.0.0/8]
sinks:
  - name: %s
    %s
    concurrency: %d
    retry: {initial: 100ms, multiplier: 2, max_interval: 5s, max_attempts: 25, jitter: 0.2}
`, c.dir, outboxExtra(c.p.CourierOutbox), c.p.CourierEventLog, sinkName, sink, c.p.Concurrency)
	cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false }, builtin.Kinds())
	if err != nil {
		return nil, fmt.Errorf("courier config: %w", err)
	}
	return cfg, nil
}

// outboxExtra turns "key: value, ..." into lines of the outbox block.
func outboxExtra(settings string) string {
	var lines []string
	for _, kv := range strings.Split(settings, ",") {
		if kv = strings.TrimSpace(kv); kv != "" {
			lines = append(lines, "  "+kv)
		}
	}
	return strings.Join(lines, "\n")
}

// sinkTimeout is the configured sink's own timeout, from which the worker
// derives the consumer's AckWait.
func sinkTimeout(s config.Sink) time.Duration {
	if s.Settings != nil {
		return s.Settings.AttemptTimeout()
	}
	return 15 * time.Second
}

func (c *courierSys) open(ctx context.Context) error {
	var err error
	if c.dir, err = os.MkdirTemp("", "courier-bench-"); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	// Where the sink delivers is not known yet, and not used until delivery
	// starts; every kind has the same timeout, so the consumer is the same.
	if c.cfg, err = c.configFor(sinkTarget{Kind: "webhook", URL: "http://127.0.0.1:9/unused"}); err != nil {
		return err
	}
	c.srv, err = outbox.StartServer(ctx, outbox.ServerConfig{
		Name: c.cfg.NodeID, Listen: "127.0.0.1:0", DataDir: c.dir, SyncAlways: true,
		MaxPayload: int32(c.cfg.Outbox.MaxEventSize) + 64<<10,
	}, c.log)
	if err != nil {
		return fmt.Errorf("start outbox: %w", err)
	}
	nc, js, err := openJetStream(c.srv.InProcessConn())
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := outbox.EnsureStreams(ctx, js, worker.Limits(c.cfg)); err != nil {
		return fmt.Errorf("outbox streams: %w", err)
	}
	// The same consumer settings the worker derives (worker.setUp), so the
	// worker started later finds it unchanged and resumes from it; a new
	// consumer would start at new events only.
	timeout := sinkTimeout(c.cfg.Sinks[0]) + time.Second
	ackWait := timeout + timeout/2 + 2*time.Second
	if _, err := outbox.EnsureConsumer(ctx, js, sinkName, ackWait, max(1000, 20*c.p.Concurrency)); err != nil {
		return fmt.Errorf("sink consumer: %w", err)
	}
	if err := c.srv.Listen(ctx); err != nil {
		return fmt.Errorf("outbox listen: %w", err)
	}
	c.url = c.srv.ClientURL()
	return c.dial(ctx)
}

func (c *courierSys) dial(ctx context.Context) error {
	pub, err := outbox.Dial(ctx, c.url, 10*time.Second)
	if err != nil {
		return fmt.Errorf("dial outbox: %w", err)
	}
	c.pub = pub
	return nil
}

// startDelivery stops the bare outbox and starts the worker, with the sink
// delivering to the endpoint, over the same data: the node coming (back) up.
func (c *courierSys) startDelivery(ctx context.Context, to sinkTarget) error {
	c.pub.Close()
	c.srv.Shutdown()
	c.srv = nil
	cfg, err := c.configFor(to)
	if err != nil {
		return err
	}
	c.cfg = cfg
	if c.w, err = worker.Start(ctx, cfg, "bench", c.log); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	c.url = c.w.URL()
	return c.dial(ctx)
}

func (c *courierSys) emit(ctx context.Context, i int) error {
	if _, err := c.pub.Emit(ctx, envelope(i, dataFor(c.p.Size), c.p.Types)); err != nil {
		return fmt.Errorf("emit %d: %w", i, err)
	}
	return nil
}

// emitAsync queues one event; wait reports whether it was stored.
func (c *courierSys) emitAsync(ctx context.Context, i int) (func() error, error) {
	pe, err := c.pub.EmitAsync(ctx, envelope(i, dataFor(c.p.Size), c.p.Types))
	if err != nil {
		return nil, fmt.Errorf("emit %d: %w", i, err)
	}
	return func() error {
		if _, err := pe.Wait(ctx); err != nil {
			return fmt.Errorf("emit %d: %w", i, err)
		}
		return nil
	}, nil
}

// fast queues n events as fast as Courier's producer API takes them: one
// producer streaming with EmitAsync (as `emit --file` does), which groups
// whatever is queued into shared fsyncs; it returns once all are stored.
// At most fastWindow events are outstanding (beyond that it waits for the
// oldest), so that a 1M backlog does not hold a million pending emits in
// the harness.
func (c *courierSys) fast(ctx context.Context, n int, stamp func(int)) error {
	waits := make([]func() error, 0, min(n, fastWindow))
	for i := range n {
		if len(waits) == fastWindow {
			if err := waits[0](); err != nil {
				return err
			}
			waits = waits[1:]
		}
		if stamp != nil {
			stamp(i)
		}
		w, err := c.emitAsync(ctx, i)
		if err != nil {
			return err
		}
		waits = append(waits, w)
	}
	for _, w := range waits {
		if err := w(); err != nil {
			return err
		}
	}
	return nil
}

// fastWindow bounds the emits outstanding in fast: 8x what the publisher
// commits at once (two atomic batches of 500), so the producer is never
// held up. The harness shares the worker's process and so its peak RSS:
// at 65,536 the pending emits were most of the 100k backlog's peak (218
// MiB against 140 at this window, queueing about as fast).
const fastWindow = 1 << 13

// waitLog waits until the node's event log has read every event and
// attempt: its consumers on both streams have nothing pending or
// unacknowledged.
func (c *courierSys) waitLog(ctx context.Context, within time.Duration) error {
	nc, js, err := openJetStream(nats.Connect(c.url))
	if err != nil {
		return err
	}
	defer nc.Close()
	consumers := map[string]string{
		outbox.StreamEvents:   outbox.LogConsumer(c.cfg.NodeID, false),
		outbox.StreamAttempts: outbox.AttemptsLogConsumer(c.cfg.NodeID, false),
	}
	for deadline := time.Now().Add(within); ; {
		caughtUp := true
		for stream, name := range consumers {
			cons, err := js.Consumer(ctx, stream, name)
			if err != nil {
				return fmt.Errorf("event log consumer %s: %w", name, err)
			}
			if info := cons.CachedInfo(); info.NumPending > 0 || info.NumAckPending > 0 {
				caughtUp = false
			}
		}
		if caughtUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the event log did not catch up within %s", within)
		}
		time.Sleep(20 * time.Millisecond) // polling the consumers' state
	}
}

// openJetStream opens JetStream over a connection just made to the
// outbox; the caller closes the connection.
func openJetStream(nc *nats.Conn, err error) (*nats.Conn, jetstream.JetStream, error) {
	if err != nil {
		return nil, nil, fmt.Errorf("outbox connection: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

func (c *courierSys) store() (url, stream string) { return c.url, outbox.StreamEvents }

func (c *courierSys) close() {
	if c.pub != nil {
		c.pub.Close()
	}
	if c.w != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		c.w.Shutdown(ctx)
		cancel()
	}
	if c.srv != nil {
		c.srv.Shutdown()
	}
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
}

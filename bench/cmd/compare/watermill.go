package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	wmTopic    = "events" // stream name and subject (the publisher uses the topic as both)
	wmPoison   = "events_poison"
	wmConsumer = "webhook"
	// wmAckWait is how long JetStream waits for an ack before redelivering,
	// and the subscriber's own AckWaitTimeout: long enough for an event
	// waiting in the Retry middleware.
	wmAckWait = 60 * time.Second
)

// watermillSys is the peer pipeline: an embedded nats-server with
// JetStream file storage and SyncAlways (fsync before every ack, as
// Courier's `sync: always`), the watermill-nats JetStream publisher, and a
// Watermill router whose handlers POST each message with net/http, behind
// the PoisonQueue and Retry middlewares.
type watermillSys struct {
	p      params
	dir    string
	ns     *server.Server
	nc     *nats.Conn
	pub    *wmjs.Publisher
	sub    *wmjs.Subscriber
	router *message.Router
	out    message.Publisher // scenario (5): the AMQP or Kafka publisher the handlers forward to
	runErr chan error
	cancel context.CancelFunc
}

func newWatermill(p params) *watermillSys { return &watermillSys{p: p} }

func (s *watermillSys) open(ctx context.Context) error {
	var err error
	if s.dir, err = os.MkdirTemp("", "watermill-bench-"); err != nil {
		return fmt.Errorf("store dir: %w", err)
	}
	s.ns, err = server.NewServer(&server.Options{
		ServerName: "watermill-bench", Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: s.dir, SyncAlways: true,
		NoLog: true, NoSigs: true, MaxPayload: 1 << 20,
	})
	if err != nil {
		return fmt.Errorf("nats server: %w", err)
	}
	go s.ns.Start()
	if !s.ns.ReadyForConnections(20 * time.Second) {
		return errors.New("nats server not ready within 20s")
	}
	if s.nc, err = nats.Connect(s.ns.ClientURL()); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	js, err := jetstream.New(s.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// The same stream settings as Courier's outbox where Watermill has an
	// equivalent: file storage, limits retention, refuse when full, a 2m
	// de-duplication window on Nats-Msg-Id.
	for _, name := range []string{wmTopic, wmPoison} {
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: name, Subjects: []string{name},
			Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy,
			Discard: jetstream.DiscardNew, Duplicates: 2 * time.Minute,
		}); err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	// One durable consumer shared by every handler, created before any
	// event so a backlog is kept for it; MaxAckPending as Courier's.
	if _, err := js.CreateOrUpdateConsumer(ctx, wmTopic, jetstream.ConsumerConfig{
		Durable: wmConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: wmAckWait,
		DeliverPolicy: jetstream.DeliverAllPolicy, MaxDeliver: -1,
		MaxAckPending: max(1000, 20*s.p.Concurrency),
	}); err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	if s.pub, err = wmjs.NewPublisher(wmjs.PublisherConfig{URL: s.ns.ClientURL(), Logger: wmLogger()}); err != nil {
		return fmt.Errorf("watermill publisher: %w", err)
	}
	return nil
}

// startDelivery starts the router: Concurrency handlers on the shared
// durable consumer. The watermill-nats JetStream subscriber handles one
// message at a time per subscription (it waits for the ack inside the
// Consume callback), so parallel deliveries need one subscription each.
func (s *watermillSys) startDelivery(ctx context.Context, to sinkTarget) error {
	handle, err := s.handlerFor(to)
	if err != nil {
		return err
	}
	s.sub, err = wmjs.NewSubscriber(wmjs.SubscriberConfig{
		URL: s.ns.ClientURL(), Logger: wmLogger(),
		AckWaitTimeout: wmAckWait,
		// Plain ack, as Courier's delivery loop does (the default is
		// DoubleAck, a round trip per event).
		AckAsync: true,
		ResourceInitializer: func(ctx context.Context, js jetstream.JetStream, topic string) (jetstream.Consumer, func(context.Context, watermill.LoggerAdapter), error) {
			c, err := js.Consumer(ctx, topic, wmConsumer)
			return c, nil, err
		},
		// Few messages buffered per subscription: they count towards
		// MaxAckPending, and 64 subscriptions × the default 500 would
		// just hold events in client buffers.
		ConsumeOptions: []jetstream.PullConsumeOpt{jetstream.PullMaxMessages(16)},
	})
	if err != nil {
		return fmt.Errorf("watermill subscriber: %w", err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 20 * time.Second}, wmLogger())
	if err != nil {
		return fmt.Errorf("watermill router: %w", err)
	}
	poison, err := middleware.PoisonQueue(s.pub, wmPoison)
	if err != nil {
		return fmt.Errorf("poison queue: %w", err)
	}
	// The same schedule as Courier's sink: 100ms doubling to 5s, ±20%,
	// 25 attempts; then the poison queue (Courier's dead letter).
	router.AddMiddleware(poison, middleware.Retry{
		MaxRetries: 24, InitialInterval: 100 * time.Millisecond, Multiplier: 2,
		MaxInterval: 5 * time.Second, RandomizationFactor: 0.2,
	}.Middleware)
	for k := range s.p.Concurrency {
		router.AddConsumerHandler(fmt.Sprintf("deliver-%d", k), wmTopic, s.sub, handle)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel, s.router, s.runErr = cancel, router, make(chan error, 1)
	go func() { s.runErr <- router.Run(runCtx) }()
	t := time.NewTimer(20 * time.Second)
	defer t.Stop()
	select {
	case <-router.Running():
		return nil
	case err := <-s.runErr:
		return fmt.Errorf("watermill router: %w", err)
	case <-t.C:
		return errors.New("watermill router not running within 20s")
	}
}

// handlerFor returns the router handler delivering to the endpoint: an
// HTTP POST, or a publish to RabbitMQ or Kafka through Watermill's own
// publishers for them.
func (s *watermillSys) handlerFor(to sinkTarget) (message.NoPublishHandlerFunc, error) {
	switch to.Kind {
	case "webhook":
		h := &hookHandler{url: to.URL, client: &http.Client{
			Timeout:       15 * time.Second, // Courier's default sink timeout
			Transport:     &http.Transport{MaxIdleConnsPerHost: s.p.Concurrency, IdleConnTimeout: 90 * time.Second},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}}
		return h.handle, nil
	case "amqp":
		pub, err := newWatermillAMQP(to, s.p.Concurrency)
		if err != nil {
			return nil, err
		}
		s.out = pub
		return forward(pub, to.Exchange), nil
	case "kafka":
		pub, err := newWatermillKafka(to)
		if err != nil {
			return nil, err
		}
		s.out = pub
		return forward(pub, to.Topic), nil
	}
	return nil, fmt.Errorf("watermill: unknown sink kind %q", to.Kind)
}

// forward publishes the message's payload under its UUID (the event id) to
// topic, and returns once the broker confirmed it; an error makes the
// Retry middleware try again. The JetStream metadata stays behind, as
// Courier's sinks do not forward the outbox's headers either.
func forward(pub message.Publisher, topic string) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		out := message.NewMessage(msg.UUID, msg.Payload)
		out.SetContext(msg.Context())
		if err := pub.Publish(topic, out); err != nil {
			return fmt.Errorf("forward %s: %w", msg.UUID, err)
		}
		return nil
	}
}

type hookHandler struct {
	url    string
	client *http.Client
}

// handle POSTs one message; any error (transport or non-2xx) makes the
// Retry middleware try again.
func (h *hookHandler) handle(msg *message.Message) error {
	req, err := http.NewRequestWithContext(msg.Context(), http.MethodPost, h.url, bytes.NewReader(msg.Payload))
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", msg.UUID)
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return nil
}

func (s *watermillSys) message(i int) (*message.Message, error) {
	payload, err := watermillPayload(i, s.p.Size, s.p.Types)
	if err != nil {
		return nil, fmt.Errorf("encode %d: %w", i, err)
	}
	m := message.NewMessage(eventID(i), payload)
	// De-duplicated on the event id like Courier's emit (the JetStream
	// header passes through the NATS marshaler's metadata).
	m.Metadata.Set(nats.MsgIdHdr, eventID(i))
	return m, nil
}

// emit publishes one event; Publish returns after JetStream's ack, which
// with SyncAlways comes after the fsync.
func (s *watermillSys) emit(_ context.Context, i int) error {
	m, err := s.message(i)
	if err != nil {
		return err
	}
	if err := s.pub.Publish(wmTopic, m); err != nil {
		return fmt.Errorf("publish %d: %w", i, err)
	}
	return nil
}

// emitAsync publishes from a goroutine of its own, as concurrent request
// handlers of an application would: Watermill has no asynchronous publish.
func (s *watermillSys) emitAsync(ctx context.Context, i int) (func() error, error) {
	errc := make(chan error, 1)
	go func() { errc <- s.emit(ctx, i) }()
	return func() error { return <-errc }, nil
}

// fast queues n events with 64 concurrent producers (Publish blocks for
// each ack, so one producer would be bound by one fsync per event).
func (s *watermillSys) fast(ctx context.Context, n int, stamp func(int)) error {
	return produce(ctx, n, 64, func(ctx context.Context, i int) error {
		if stamp != nil {
			stamp(i)
		}
		return s.emit(ctx, i)
	})
}

func (s *watermillSys) store() (url, stream string) { return s.ns.ClientURL(), wmTopic }

func (s *watermillSys) close() {
	if s.router != nil {
		_ = s.router.Close()
		s.cancel()
		<-s.runErr
	}
	if s.sub != nil {
		_ = s.sub.Close()
	}
	if s.out != nil {
		_ = s.out.Close()
	}
	if s.pub != nil {
		_ = s.pub.Close()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// produce runs emit for indices 0..n-1 from the given number of goroutines
// and returns the first error.
func produce(ctx context.Context, n, producers int, emit func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		next  = make(chan int)
	)
	for range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := emit(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return first
}

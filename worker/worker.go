// Package worker assembles one Courier node from its configuration: the
// embedded (or external) outbox, its streams, and one delivery loop per sink.
// It holds no delivery logic of its own; it wires the packages that do.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/delivery"
	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/observability"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/sinks"
	"github.com/courierhq/courier/sinks/amqp"
	"github.com/courierhq/courier/sinks/kafka"
	"github.com/courierhq/courier/sinks/webhook"
)

// Worker is a running node.
type Worker struct {
	cfg    *config.File
	log    *slog.Logger
	server *outbox.Server // nil with an external outbox
	nc     *nats.Conn
	js     jetstream.JetStream
	loops  map[string]*delivery.Loop
	sinks  []sinks.Sink
	cancel context.CancelFunc
	wg     sync.WaitGroup
	url    string

	expiryCheck time.Duration
	parkAfter   time.Duration
	nodes       *outbox.Nodes
	started     time.Time
	version     string
	oldest      atomic.Int64 // nanoseconds
	tel         *observability.Telemetry
	ready       atomic.Bool
}

// Option adjusts a Worker.
type Option func(*Worker)

// WithTelemetry sends the node's spans and metrics to tel's providers.
func WithTelemetry(tel *observability.Telemetry) Option { return func(w *Worker) { w.tel = tel } }

// WithParkAfter sets how long a retry may wait at the event's own outbox
// position before the event moves to the end (default
// delivery.DefaultParkAfter).
func WithParkAfter(d time.Duration) Option { return func(w *Worker) { w.parkAfter = d } }

// WithExpiryCheck sets how often the outbox is checked for events that
// expired before every sink confirmed them (default 30s).
func WithExpiryCheck(d time.Duration) Option { return func(w *Worker) { w.expiryCheck = d } }

// Start brings the node up: outbox first, then one loop per sink. On error
// everything started so far is stopped again.
func Start(ctx context.Context, cfg *config.File, version string, log *slog.Logger, opts ...Option) (_ *Worker, err error) {
	w := &Worker{cfg: cfg, log: log, loops: map[string]*delivery.Loop{}, expiryCheck: 30 * time.Second, version: version}
	for _, o := range opts {
		o(w)
	}
	defer func() {
		if err != nil {
			w.stopOutbox()
			w.closeSinks(context.Background())
		}
	}()
	always, interval, err := cfg.Outbox.SyncPolicy()
	if err != nil {
		return nil, err
	}
	w.url = cfg.Outbox.URL
	if w.url == "" {
		w.server, err = outbox.StartServer(ctx, outbox.ServerConfig{
			Name: cfg.NodeID, Listen: cfg.Outbox.Listen, DataDir: cfg.DataDir,
			SyncAlways: always, SyncInterval: interval,
			// Room for the event plus its headers.
			MaxPayload: int32(cfg.Outbox.MaxEventSize) + 64<<10,
		}, log)
		if err != nil {
			return nil, err
		}
	}
	// Streams and consumers exist before any producer can reach the
	// embedded outbox; see outbox.StartServer.
	if err := w.setUp(ctx, version); err != nil {
		return nil, err
	}
	if w.server != nil {
		if err := w.server.Listen(ctx); err != nil {
			return nil, err
		}
		w.url = w.server.ClientURL()
		log.Info("embedded outbox listening", "url", w.url, "data_dir", cfg.DataDir, "sync", cfg.Outbox.Sync)
	}
	if w.nc, err = outbox.Connect(ctx, w.url, "courier-worker-"+cfg.NodeID, 10*time.Second); err != nil {
		return nil, err
	}
	if w.js, err = jetstream.New(w.nc); err != nil {
		return nil, fmt.Errorf("open JetStream: %w", err)
	}
	dlq, retries := outbox.NewDeadLetters(w.js), outbox.NewRetries(w.js)
	states, err := outbox.EnsureSinkStates(ctx, w.js, 1)
	if err != nil {
		return nil, err
	}
	if w.nodes, err = outbox.EnsureNodes(ctx, w.js, 1); err != nil {
		return nil, err
	}
	w.started = time.Now().UTC()
	attempts, err := outbox.EnsureAttemptLog(ctx, w.nc, w.js, AttemptLogMaxAge, AttemptLogMaxBytes)
	if err != nil {
		return nil, err
	}
	for _, sc := range cfg.Sinks {
		sink, err := BuildSink(sc, version, w.tracer())
		if err != nil {
			return nil, fmt.Errorf("sink %s: %w", sc.Name, err)
		}
		w.sinks = append(w.sinks, sink)
		cons, err := w.js.Consumer(ctx, outbox.StreamEvents, delivery.ConsumerName(sc.Name))
		if err != nil {
			return nil, fmt.Errorf("open consumer of sink %s: %w", sc.Name, err)
		}
		filter, _ := sc.Filter() // validated with the config
		var limiter *rate.Limiter
		if perSecond, burst, _ := sc.RateLimit(); perSecond > 0 {
			limiter = rate.NewLimiter(rate.Limit(perSecond), burst)
		}
		loop, err := delivery.NewLoop(delivery.Config{
			Name: sc.Name, Sink: sink, Filter: filter, Policy: sc.Retry,
			Concurrency: sc.Concurrency, Timeout: attemptTimeout(sc),
			DrainTimeout: cfg.ShutdownTimeout, Node: cfg.NodeID,
			Tracer: w.tracer(), Meter: w.meter(),
			ParkAfter: w.parkAfter, Limiter: limiter, Breaker: sc.CircuitBreaker, States: states,
			Attempts: attempts, Ordered: sc.Ordering == "key", AckWait: ackWaitFor(sc),
		}, cons, dlq, retries, log)
		if err != nil {
			return nil, err
		}
		w.loops[sc.Name] = loop
	}
	if err := w.registerGauges(dlq); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel = cancel
	for name, l := range w.loops {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			_ = l.Run(runCtx)
			log.Debug("delivery loop stopped", "sink", name)
		}()
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.maintainOutbox(runCtx)
	}()
	w.beat(ctx, false)
	w.ready.Store(true)
	log.Info("worker started", "node", cfg.NodeID, "sinks", len(w.loops))
	return w, nil
}

// The attempt log keeps a day of attempts, in memory, up to 64 MiB.
const (
	AttemptLogMaxAge   = 24 * time.Hour
	AttemptLogMaxBytes = 64 << 20
)

// HeartbeatInterval is how often a node reports itself; `worker status`
// shows a node DOWN after three missed beats.
const HeartbeatInterval = 5 * time.Second

// beat reports this node in the nodes bucket.
func (w *Worker) beat(ctx context.Context, stopped bool) {
	info := outbox.NodeInfo{Node: w.cfg.NodeID, URL: w.url, Version: w.version, Started: w.started,
		Heartbeat: time.Now().UTC(), Stopped: stopped, LastError: map[string]string{}}
	for name, l := range w.loops {
		info.Sinks = append(info.Sinks, name)
		if e := l.LastError(); e != "" {
			info.LastError[name] = e
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := w.nodes.Beat(ctx, info); err != nil {
		w.log.Warn("heartbeat", "err", err)
	}
}

// trimInterval is how often delivered events are removed from the outbox.
const trimInterval = time.Second

// maintainOutbox trims delivered events every second and checks for events
// about to expire.
func (w *Worker) maintainOutbox(ctx context.Context) {
	trim := time.NewTicker(trimInterval)
	defer trim.Stop()
	heartbeat := time.NewTicker(HeartbeatInterval)
	defer heartbeat.Stop()
	expiry := time.NewTicker(w.expiryCheck)
	defer expiry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-trim.C:
			if _, err := outbox.Trim(ctx, w.js); err != nil && ctx.Err() == nil {
				w.log.Warn("trim delivered events from the outbox", "err", err)
			}
		case <-expiry.C:
			w.checkExpiry(ctx)
		case <-heartbeat.C:
			w.beat(ctx, false)
		}
	}
}

// checkExpiry warns while the outbox still holds an event older than 80%
// of its max_age: that event is owed to some sink whose worker has not been
// able to deliver or dead-letter it (while a worker runs, retry.max_age
// dead-letters events first), and the outbox will drop it at max_age.
func (w *Worker) checkExpiry(ctx context.Context) {
	s, err := w.js.Stream(ctx, outbox.StreamEvents)
	if err != nil {
		w.log.Warn("expiry check: read outbox", "err", err)
		return
	}
	st := s.CachedInfo().State
	if st.Msgs == 0 {
		w.oldest.Store(0)
		return
	}
	age := time.Since(st.FirstTime)
	w.oldest.Store(int64(age))
	if maxAge := w.cfg.Outbox.MaxAge; age > maxAge*8/10 {
		w.log.Error("the outbox holds undelivered events close to outbox.max_age; they will be dropped undelivered unless a sink confirms or dead-letters them",
			"oldest_age", age.Round(time.Second), "dropped_at", st.FirstTime.Add(maxAge).UTC(), "undelivered", st.Msgs)
	}
}

// OldestEventAge is the age of the oldest event still in the outbox, as of
// the last check (zero when empty).
func (w *Worker) OldestEventAge() time.Duration { return time.Duration(w.oldest.Load()) }

// setUp creates or updates the streams and one durable consumer per sink,
// and removes the consumers of sinks no longer configured.
func (w *Worker) setUp(ctx context.Context, version string) error {
	var (
		nc  *nats.Conn
		err error
	)
	if w.server != nil {
		nc, err = w.server.InProcessConn()
	} else {
		nc, err = outbox.Connect(ctx, w.url, "courier-setup-"+w.cfg.NodeID, 10*time.Second)
	}
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("open JetStream: %w", err)
	}
	if err := outbox.EnsureStreams(ctx, js, Limits(w.cfg)); err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, s := range w.cfg.Sinks {
		keep[s.Name] = true
	}
	removed, err := delivery.RemoveStaleConsumers(ctx, js, keep)
	for name, pending := range removed {
		w.log.Warn("sink no longer configured: removed its consumer; its undelivered events are no longer kept for it", "sink", name, "undelivered", pending)
	}
	if err != nil {
		return err
	}
	if len(w.cfg.Sinks) == 0 {
		w.log.Warn("no sinks configured: emitted events are kept until outbox.max_age, or until the outbox is full, as no sink is to receive them")
	}
	for _, sc := range w.cfg.Sinks {
		if _, err := delivery.EnsureConsumer(ctx, js, sc.Name, ackWaitFor(sc), max(1000, 20*sc.Concurrency)); err != nil {
			return err
		}
	}
	return nil
}

// Limits are the outbox limits the configuration asks for.
func Limits(cfg *config.File) outbox.Limits {
	return outbox.Limits{
		MaxAge:           cfg.Outbox.MaxAge,
		MaxBytes:         int64(cfg.Outbox.MaxBytes),
		MaxEventSize:     int32(cfg.Outbox.MaxEventSize),
		Duplicates:       cfg.Outbox.DuplicateWindow,
		DeadLetterMaxAge: cfg.Outbox.DeadLetterMaxAge,
	}
}

// ackWaitFor is the sink's consumer ack wait. It must outlast an attempt
// (or the event is sent twice) but is also how soon events in flight on a
// crashed node are sent again: a little more than one attempt.
func ackWaitFor(sc config.Sink) time.Duration {
	timeout := attemptTimeout(sc)
	return timeout + timeout/2 + 2*time.Second
}

// attemptTimeout backs up the sink's own timeout by a second.
func attemptTimeout(sc config.Sink) time.Duration {
	switch {
	case sc.Webhook != nil:
		return sc.Webhook.Timeout + time.Second
	case sc.AMQP != nil:
		return sc.AMQP.Timeout + time.Second
	case sc.Kafka != nil:
		return sc.Kafka.Timeout + time.Second
	}
	return time.Minute
}

// BuildSink constructs the sink a configuration entry describes. tp, when
// not nil, receives the sink's client spans.
func BuildSink(sc config.Sink, version string, tp trace.TracerProvider) (sinks.Sink, error) {
	format, err := event.ParseFormat(sc.Format)
	if err != nil {
		return nil, err
	}
	switch {
	case sc.Webhook != nil:
		var opts []webhook.Option
		if tp != nil {
			opts = append(opts, webhook.WithTracerProvider(tp))
		}
		return webhook.New(*sc.Webhook, format, sc.Concurrency, version, opts...)
	case sc.AMQP != nil:
		var opts []amqp.Option
		if tp != nil {
			opts = append(opts, amqp.WithTracerProvider(tp))
		}
		return amqp.New(*sc.AMQP, format, sc.Concurrency, version, opts...)
	case sc.Kafka != nil:
		var opts []kafka.Option
		if tp != nil {
			opts = append(opts, kafka.WithTracerProvider(tp))
		}
		return kafka.New(*sc.Kafka, format, sc.Concurrency, version, opts...)
	}
	return nil, fmt.Errorf("sink %s: unknown type %q", sc.Name, sc.Type)
}

// URL is the outbox URL producers use.
func (w *Worker) URL() string { return w.url }

// Loop returns a sink's delivery loop (nil if there is none).
func (w *Worker) Loop(sink string) *delivery.Loop { return w.loops[sink] }

// Shutdown stops fetching, lets in-flight deliveries finish (bounded by the
// shutdown timeout), then closes sinks and the outbox in that order.
func (w *Worker) Shutdown(ctx context.Context) {
	w.ready.Store(false)
	w.cancel()
	w.wg.Wait()
	w.beat(ctx, true)
	w.closeSinks(ctx)
	w.stopOutbox()
	w.log.Info("worker stopped")
}

func (w *Worker) closeSinks(ctx context.Context) {
	for _, s := range w.sinks {
		_ = s.Close(ctx)
	}
}

func (w *Worker) stopOutbox() {
	if w.nc != nil {
		// Flush so the last acknowledgements reach the server before it
		// goes away; otherwise those events are delivered again.
		if err := w.nc.FlushTimeout(5 * time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			w.log.Warn("flush outbox connection", "err", err)
		}
		w.nc.Close()
	}
	if w.server != nil {
		w.server.Shutdown()
	}
}

// ClientURL turns a listen address into the URL a local client dials:
// a wildcard host becomes the loopback address.
func ClientURL(o config.Outbox) string {
	if o.URL != "" {
		return o.URL
	}
	host, port, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return "nats://" + o.Listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "nats://" + net.JoinHostPort(host, port)
}

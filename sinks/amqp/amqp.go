// Package amqp delivers events to a RabbitMQ exchange (AMQP 0-9-1) as
// persistent messages, with Courier, Gluster or CloudEvents bodies
// (structured, or binary with "cloudEvents_" headers as the CloudEvents AMQP
// binding names them).
//
// An event counts as delivered only once the broker confirmed it (publisher
// confirms) and, with mandatory (the default), routed it to at least one
// queue: RabbitMQ confirms an unroutable message too, after returning it, so
// a basic.return for the message turns its confirm into a permanent failure.
//
// One connection and one channel in confirm mode carry every Send. A Send
// publishes under a lock and then waits for its own confirm without it, so
// concurrent Sends keep many publishes outstanding instead of paying one
// round trip each. The connection is opened by the first Send, and again by
// the first Send after it was lost, so a worker starts while the broker is
// down and its Sends fail retryable until the broker is back.
package amqp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/observability"
	"github.com/courierhq/courier/retry"
	"github.com/courierhq/courier/sinks"
)

// Names Courier gives things on the wire.
const (
	appID = "courier"
	// HeaderEventType carries the event type, so consumers and headers
	// exchanges can select events without parsing bodies.
	HeaderEventType = "courier-event-type"
	// HeaderPublishID carries the publish's delivery tag on its channel, so
	// a basic.return is matched to the very publish it returns (the message
	// id is not enough: the same event may be in flight twice).
	HeaderPublishID = "courier-publish-id"
	// cloudEventsPrefix names CloudEvents attributes in binary mode, per the
	// AMQP protocol binding.
	cloudEventsPrefix = "cloudEvents_"
)

// redialInterval spaces connection attempts, so that while the broker is
// down every Send does not dial it again; Sends in between fail fast with
// the last attempt's error.
const redialInterval = 500 * time.Millisecond

var errClosed = errors.New("amqp sink is closed")

// Sink publishes events to one exchange.
type Sink struct {
	tracer trace.Tracer // nil: no spans
	cfg    Config
	format event.Format
	key    sinks.Template
	tls    *tls.Config
	props  amqp091.Table

	// abort is cancelled by Close, to cut short a dial in flight.
	abort       context.Context
	cancelAbort context.CancelFunc

	mu       sync.Mutex
	cur      *session      // the open connection, nil until dialled or after it died
	dialing  chan struct{} // closed when the dial in flight ends; nil when none is
	lastDial time.Time
	lastErr  *retry.Error // why there is no session: the last dial's failure or the last session's end
	closed   bool
}

// Option adjusts a Sink.
type Option func(*Sink)

// WithTracerProvider records a producer span per publish.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(s *Sink) { s.tracer = tp.Tracer("github.com/courierhq/courier/sinks/amqp") }
}

// New validates cfg and returns a sink. It does not connect: the first Send
// does, so a broker that is down delays events instead of failing the
// worker's start. concurrency needs no pool here: concurrent Sends share
// one channel, each waiting for its own confirm.
func New(cfg Config, format event.Format, concurrency int, version string, opts ...Option) (*Sink, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("amqp sink: %w", err)
	}
	if _, err := event.ParseFormat(string(format)); err != nil {
		return nil, fmt.Errorf("amqp sink: %w", err)
	}
	key, _ := sinks.ParseTemplate("routing_key", cfg.RoutingKey) // validated above
	tc, _ := cfg.tlsConfig()                                     // validated above
	props := amqp091.NewConnectionProperties()
	props["product"] = "courier"
	props["version"] = version
	// Operators find the sink's connection by this name in the management UI.
	props.SetClientConnectionName(fmt.Sprintf("courier %s: exchange %s", version, cfg.Exchange))
	abort, cancel := context.WithCancel(context.Background())
	s := &Sink{cfg: cfg, format: format, key: key, tls: tc, props: props, abort: abort, cancelAbort: cancel}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Send publishes e and returns once the broker confirmed it, or with a
// classified error. It waits at most cfg.Timeout, connecting included.
// With tracing on, the publish is a producer span whose context the
// message's headers carry.
func (s *Sink) Send(ctx context.Context, e *event.Envelope) (err error) {
	ctx, finish := observability.SendSpan(ctx, s.tracer, "send "+s.cfg.Exchange, trace.SpanKindProducer,
		semconv.MessagingSystemRabbitMQ, semconv.MessagingOperationTypeSend,
		semconv.MessagingDestinationName(s.cfg.Exchange), semconv.MessagingMessageID(e.ID))
	defer func() { finish(err) }()
	return s.send(ctx, e)
}

func (s *Sink) send(ctx context.Context, e *event.Envelope) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	msg, key, err := s.message(ctx, e)
	if err != nil {
		return retry.NewPermanent(err)
	}
	sess, rerr := s.session(ctx)
	if rerr != nil {
		return rerr
	}
	if reason := sess.blocked.Load(); reason != nil {
		// Publishing now would only wait for the timeout: a blocked broker
		// reads nothing until its resource alarm clears.
		return retry.NewRetryable(fmt.Errorf("broker blocks publishers: %s", *reason))
	}
	tag, res, rerr := sess.publish(ctx, s.cfg.Exchange, key, s.cfg.mandatory(), msg)
	if rerr != nil {
		return rerr
	}
	select {
	case err := <-res:
		return err // nil, or a *retry.Error
	case <-ctx.Done():
		sess.forget(tag)
		return retry.NewRetryable(fmt.Errorf("event %s: no confirm from the broker: %w", e.ID, ctx.Err()))
	}
}

// Close waits (within ctx) for the confirms of the Sends in flight, then
// closes the connection. Sends after Close fail retryable.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	sess, dialing := s.cur, s.dialing
	s.cur = nil
	s.mu.Unlock()
	s.cancelAbort()
	if dialing != nil {
		// Cut short by cancelAbort; were it to succeed anyway, it closes
		// its own connection once it sees the sink closed.
		select {
		case <-dialing:
		case <-ctx.Done():
			return fmt.Errorf("close amqp sink while connecting: %w", ctx.Err())
		}
	}
	if sess == nil {
		return nil
	}
	return sess.close(ctx)
}

// message renders e as a publishing and its routing key.
func (s *Sink) message(ctx context.Context, e *event.Envelope) (amqp091.Publishing, string, error) {
	key := s.key.Render(e)
	if len(key) > maxShortString {
		return amqp091.Publishing{}, "", fmt.Errorf("event %s: routing key is %d bytes, AMQP allows %d", e.ID, len(key), maxShortString)
	}
	headers := amqp091.Table{HeaderEventType: e.Type}
	var (
		body []byte
		ct   string
		err  error
	)
	if s.format == event.FormatCloudEvents && s.cfg.CloudEventsMode == sinks.CloudEventsBinary {
		var attrs map[string]string
		attrs, body, ct = event.CloudEventsBinary(e)
		for k, v := range attrs {
			headers[cloudEventsPrefix+k] = v
		}
	} else if body, ct, err = event.Encode(s.format, e); err != nil {
		return amqp091.Publishing{}, "", err
	}
	// Consumers join the delivery's trace. TraceContext itself, not the
	// global propagator: the sink must not depend on global OTel state.
	propagation.TraceContext{}.Inject(ctx, headerCarrier(headers))
	return amqp091.Publishing{
		Headers:      headers,
		ContentType:  ct,
		DeliveryMode: amqp091.Persistent,
		MessageId:    e.ID,
		Timestamp:    e.Time,
		Type:         e.Type,
		AppId:        appID,
		Body:         body,
	}, key, nil
}

// session returns the open session, dialling one when there is none and the
// last attempt is more than redialInterval old.
func (s *Sink) session(ctx context.Context) (*session, *retry.Error) {
	waited := false
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, retry.NewRetryable(errClosed)
		}
		if sess := s.cur; sess != nil {
			why := sess.failure()
			if why == nil {
				s.mu.Unlock()
				return sess, nil
			}
			s.cur, s.lastErr = nil, why
		}
		if wait := s.dialing; wait != nil {
			s.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				return nil, retry.NewRetryable(fmt.Errorf("connect to %s: %w", s.cfg.redactedURL(), ctx.Err()))
			}
			waited = true
			continue
		}
		if waited && s.lastErr != nil {
			last := s.lastErr
			s.mu.Unlock()
			return nil, last // the dial this Send waited for failed
		}
		if since := time.Since(s.lastDial); since < redialInterval && s.lastErr != nil {
			last := s.lastErr
			s.mu.Unlock()
			// Keep the last failure's kind: a refused login stays permanent.
			return nil, &retry.Error{Kind: last.Kind, Err: fmt.Errorf("not reconnecting for another %s: %w",
				(redialInterval - since).Round(time.Millisecond), last.Err)}
		}
		done := make(chan struct{})
		s.dialing, s.lastDial = done, time.Now()
		s.mu.Unlock()
		// The dial is not bound to ctx: a caller that gives up leaves the
		// connection to the next Send (cfg.Timeout bounds the dial itself).
		go s.connect(done)
	}
}

// connect dials, publishes the outcome to the sink and closes done.
func (s *Sink) connect(done chan struct{}) {
	defer close(done)
	sess, err := s.dial()
	s.mu.Lock()
	// Spaced from the end of the attempt: one that took the whole timeout
	// is not followed at once by the next.
	s.dialing, s.lastDial = nil, time.Now()
	closed := s.closed
	switch {
	case err != nil:
		s.lastErr = err
	case !closed:
		s.cur, s.lastErr = sess, nil
	}
	s.mu.Unlock()
	if err == nil && closed {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		defer cancel()
		_ = sess.close(ctx)
	}
}

// dial opens a connection and a confirming channel and checks the exchange.
func (s *Sink) dial() (*session, *retry.Error) {
	where := s.cfg.redactedURL()
	// Close cuts the dial short by closing its socket: the handshake
	// itself is bounded only by deadlines.
	var stops []func() bool
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	cfg := amqp091.Config{
		// DialConfig writes into both; each dial gets its own copies.
		Properties: maps.Clone(s.props),
		Dial: func(network, addr string) (net.Conn, error) {
			conn, err := s.dialConn(network, addr)
			if err == nil {
				stops = append(stops, context.AfterFunc(s.abort, func() { _ = conn.Close() }))
			}
			return conn, err
		},
		Locale: "en_US",
	}
	if s.tls != nil {
		cfg.TLSClientConfig = s.tls.Clone()
	}
	conn, err := amqp091.DialConfig(s.cfg.URL, cfg)
	if err != nil {
		return nil, classify(fmt.Errorf("connect to %s: %w", where, err))
	}
	sess, rerr := s.open(conn)
	if rerr != nil {
		_ = conn.CloseDeadline(time.Now().Add(s.cfg.Timeout))
		return nil, rerr
	}
	return sess, nil
}

// open prepares the channel every Send publishes on.
func (s *Sink) open(conn *amqp091.Connection) (*session, *retry.Error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, classify(fmt.Errorf("open channel: %w", err))
	}
	if err := ch.Confirm(false); err != nil {
		return nil, classify(fmt.Errorf("enable publisher confirms: %w", err))
	}
	name := s.cfg.Exchange
	if s.cfg.Declare {
		err = ch.ExchangeDeclare(name, s.cfg.ExchangeType, true, false, false, false, nil)
		var ae *amqp091.Error
		if errors.As(err, &ae) && ae.Server && ae.Code == amqp091.PreconditionFailed {
			// Declaring again cannot change an existing exchange's type or
			// durability: a configuration error.
			return nil, retry.NewPermanent(fmt.Errorf("declare exchange %q as durable %s: it exists with other settings: %w", name, s.cfg.ExchangeType, err))
		}
		if err != nil {
			return nil, classify(fmt.Errorf("declare exchange %q: %w", name, err))
		}
	} else if err := ch.ExchangeDeclarePassive(name, s.cfg.ExchangeType, true, false, false, false, nil); err != nil {
		// Checked here so that a missing exchange is reported clearly on
		// connect rather than as a channel closed under a publish.
		return nil, classify(explain(fmt.Errorf("check exchange %q: %w", name, err), name))
	}
	ss := &session{
		conn:       conn,
		ch:         ch,
		exchange:   name,
		timeout:    s.cfg.Timeout,
		publishing: make(chan struct{}, 1),
		pending:    map[uint64]chan error{},
		returned:   map[uint64]returned{},
		dead:       make(chan struct{}),
		finished:   make(chan struct{}),
	}
	// Registered after the setup calls above and watched by one goroutine
	// that does nothing else: amqp091-go delivers these from its reader
	// goroutine, which stalls (up to 5s, then drops the notification)
	// while nobody receives. Unbuffered, so that a basic.return has been
	// received before the reader moves on to the ack that follows it.
	closes := ch.NotifyClose(make(chan *amqp091.Error, 1)) // buffered, as the library asks
	returns := ch.NotifyReturn(make(chan amqp091.Return))
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation))
	blocks := conn.NotifyBlocked(make(chan amqp091.Blocking))
	go ss.watch(confirms, returns, closes, blocks)
	return ss, nil
}

// dialConn opens the TCP connection with the sink's timeout and bounds the
// TLS and AMQP handshakes by it (the library clears that deadline once the
// connection is open).
func (s *Sink) dialConn(network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{Timeout: s.cfg.Timeout}).DialContext(s.abort, network, addr)
	if err != nil {
		return nil, err
	}
	if err := conn.SetDeadline(time.Now().Add(s.cfg.Timeout)); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return &writeDeadlineConn{Conn: conn, timeout: s.cfg.Timeout}, nil
}

// writeDeadlineConn bounds every write. amqp091-go writes without a
// deadline, and a broker that stops reading (RabbitMQ under a resource
// alarm does) would otherwise hold a publish, and the publish lock with it,
// forever. A write that times out fails the connection; the Sends waiting
// on it fail retryable and the next one reconnects.
type writeDeadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *writeDeadlineConn) Write(p []byte) (int, error) {
	if err := c.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// session is one connection and its confirming channel. It ends for good
// when either closes; the sink then dials a new one.
type session struct {
	conn     *amqp091.Connection
	ch       *amqp091.Channel
	exchange string
	timeout  time.Duration
	// publishing is held while publishing, so that delivery tags are
	// assigned in the order the broker sees publishes. A channel and not a
	// mutex, so that waiting for it honours ctx.
	publishing chan struct{}
	// blocked holds the broker's reason while it blocks publishers.
	blocked atomic.Pointer[string]

	mu       sync.Mutex
	pending  map[uint64]chan error // by delivery tag; each gets one outcome
	returned map[uint64]returned   // returns whose ack has not arrived yet
	idle     chan struct{}         // closed when pending empties, for close
	err      *retry.Error          // why the session ended
	dead     chan struct{}         // closed when err is set
	finished chan struct{}         // closed when watch returns
}

// returned is what a basic.return says about a publish.
type returned struct {
	exchange, routingKey, reason string
	code                         uint16
}

// failure returns why the session ended, or nil while it is usable.
func (ss *session) failure() *retry.Error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.err
}

// publish sends msg and returns its delivery tag and where its outcome will
// arrive.
func (ss *session) publish(ctx context.Context, exchange, key string, mandatory bool, msg amqp091.Publishing) (uint64, <-chan error, *retry.Error) {
	select {
	case ss.publishing <- struct{}{}:
	case <-ss.dead:
		return 0, nil, ss.failure()
	case <-ctx.Done():
		return 0, nil, retry.NewRetryable(fmt.Errorf("wait for the channel: %w", ctx.Err()))
	}
	defer func() { <-ss.publishing }()
	// Nobody else publishes on this channel, so this is the tag Publish
	// will take.
	tag := ss.ch.GetNextPublishSeqNo()
	res := make(chan error, 1)
	ss.mu.Lock()
	if ss.err != nil {
		ss.mu.Unlock()
		return 0, nil, ss.err
	}
	// Registered before publishing: the confirm may come back before
	// Publish returns.
	ss.pending[tag] = res
	ss.mu.Unlock()
	msg.Headers[HeaderPublishID] = int64(tag)
	if err := ss.ch.Publish(exchange, key, mandatory, false, msg); err != nil {
		// Publish fails only when the channel or connection is gone (our
		// headers are always valid). End the session now, so that the next
		// Send reconnects without waiting for the close notification.
		why := classify(fmt.Errorf("publish to exchange %q: %w", exchange, err))
		ss.forget(tag)
		ss.kill(why)
		return 0, nil, why
	}
	return tag, res, nil
}

// forget drops a publish whose Send stopped waiting.
func (ss *session) forget(tag uint64) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.pending, tag)
	ss.signalIdleLocked()
}

// watch is the only receiver of the channel's notifications. Doing it all
// in one goroutine makes the return/ack correlation deterministic:
// RabbitMQ sends a mandatory message's basic.return before its basic.ack,
// the library hands them over in that order, and so the return is recorded
// before the ack is resolved.
func (ss *session) watch(confirms <-chan amqp091.Confirmation, returns <-chan amqp091.Return, closes <-chan *amqp091.Error, blocks <-chan amqp091.Blocking) {
	defer close(ss.finished)
	// The library closes confirms last when the channel ends, and blocks
	// when the connection ends (kill closes it).
	for confirms != nil || blocks != nil {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			ss.recordReturn(r)
		case c, ok := <-confirms:
			if !ok {
				confirms = nil
				// The channel's close error, if any, was queued before
				// confirms closed; prefer it to a vague "closed".
				select {
				case e, ok := <-closes:
					if ok && e != nil {
						ss.kill(ss.closeFailure(e))
					}
				default:
				}
				ss.kill(retry.NewRetryable(errors.New("channel closed")))
				continue
			}
			ss.resolve(c)
		case e, ok := <-closes:
			if !ok {
				closes = nil
				continue
			}
			if e != nil {
				ss.kill(ss.closeFailure(e))
			}
		case b, ok := <-blocks:
			if !ok {
				blocks = nil
				continue
			}
			if b.Active {
				reason := b.Reason
				ss.blocked.Store(&reason)
			} else {
				ss.blocked.Store(nil)
			}
		}
	}
}

// recordReturn notes a basic.return until the ack of the same publish.
func (ss *session) recordReturn(r amqp091.Return) {
	tag, ok := publishID(r.Headers[HeaderPublishID])
	if !ok {
		return // not one of ours: every publish carries the header
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.returned[tag] = returned{exchange: r.Exchange, routingKey: r.RoutingKey, reason: r.ReplyText, code: r.ReplyCode}
}

// resolve hands a confirm to the Send waiting for it.
func (ss *session) resolve(c amqp091.Confirmation) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ret, wasReturned := ss.returned[c.DeliveryTag]
	delete(ss.returned, c.DeliveryTag)
	res, ok := ss.pending[c.DeliveryTag]
	if !ok {
		return // its Send gave up waiting
	}
	delete(ss.pending, c.DeliveryTag)
	ss.signalIdleLocked()
	switch {
	case !c.Ack:
		// A nack is the broker failing to take the message (an internal
		// error, a queue's overflow policy); it may pass later.
		res <- retry.NewRetryable(errors.New("the broker refused the message (basic.nack)"))
	case wasReturned:
		res <- retry.NewPermanent(fmt.Errorf("unroutable: no queue bound for routing key %q on exchange %q (%d %s)",
			ret.routingKey, ret.exchange, ret.code, ret.reason))
	default:
		res <- nil
	}
}

// kill ends the session: every pending Send gets why, and the connection is
// closed. The first reason wins.
func (ss *session) kill(why *retry.Error) {
	ss.mu.Lock()
	if ss.err != nil {
		ss.mu.Unlock()
		return
	}
	ss.err = why
	close(ss.dead)
	for tag, res := range ss.pending {
		res <- why
		delete(ss.pending, tag)
	}
	ss.signalIdleLocked()
	ss.mu.Unlock()
	// Not synchronously: closing waits for the library's reader, which may
	// itself be waiting to hand watch (a caller of kill) a notification.
	go func() { _ = ss.conn.CloseDeadline(time.Now().Add(ss.timeout)) }()
}

func (ss *session) signalIdleLocked() {
	if len(ss.pending) == 0 && ss.idle != nil {
		close(ss.idle)
		ss.idle = nil
	}
}

// close lets the publishes in flight be confirmed (within ctx), then ends
// the session and waits for watch to return.
func (ss *session) close(ctx context.Context) error {
	var err error
	select {
	case ss.publishing <- struct{}{}:
		// Held for good: nothing publishes on a closing session.
		ss.mu.Lock()
		var idle chan struct{}
		if len(ss.pending) > 0 {
			if ss.idle == nil {
				ss.idle = make(chan struct{})
			}
			idle = ss.idle
		}
		ss.mu.Unlock()
		if idle != nil {
			select {
			case <-idle:
			case <-ctx.Done():
				err = fmt.Errorf("close amqp sink with publishes unconfirmed: %w", ctx.Err())
			}
		}
	case <-ss.dead:
	case <-ctx.Done():
		err = fmt.Errorf("close amqp sink while publishing: %w", ctx.Err())
	}
	ss.kill(retry.NewRetryable(errClosed))
	select {
	case <-ss.finished:
	case <-ctx.Done():
		if err == nil {
			err = fmt.Errorf("close amqp connection: %w", ctx.Err())
		}
	}
	return err
}

// closeFailure classifies the broker closing the channel or connection.
func (ss *session) closeFailure(e *amqp091.Error) *retry.Error {
	what := "connection lost" // the library's own report, e.g. of a socket closed under it
	if e.Server {
		what = "broker closed the connection"
		if e.Recover { // a soft error, which closes only the channel
			what = "broker closed the channel"
		}
	}
	return classify(explain(fmt.Errorf("%s: %w", what, e), ss.exchange))
}

// classify decides whether a failure to connect or publish is worth
// retrying. Only the broker's own refusals that no retry changes are
// permanent, since they are configuration errors an operator must fix:
//   - 403 ACCESS_REFUSED: wrong credentials, or no permission to write to
//     the exchange;
//   - 404 NOT_FOUND: the exchange does not exist. It could be created later,
//     but nothing in Courier would create it (declare is off), so, like a
//     webhook's 404, the events go to the dead letters, where they can be
//     replayed once it exists, instead of retrying blindly.
//
// Everything else may pass: refused, lost or timed-out connections, the
// broker closing the connection (320, e.g. on shutdown), 530 (a connection
// limit, or a vhost not yet created), a message over the broker's size
// limit (406: the other publishes in flight on the channel it closed are
// innocent, so the whole lot is retried and the large one is dead-lettered
// once its attempts are exhausted).
//
// One guess is made: RabbitMQ answers a wrong password by closing the socket
// (amqp091-go cannot ask it for a connection.close instead), and the library
// reports a socket closed at that step of the handshake as ErrCredentials.
// We take it at its word and fail permanently, as for a 403; a connection
// cut in that very round trip is then misread, which costs one event a trip
// through the dead letters. ErrSASL (no mechanism in common) is a
// configuration error too.
func classify(err error) *retry.Error {
	var ae *amqp091.Error
	if errors.As(err, &ae) && ae.Server && (ae.Code == amqp091.AccessRefused || ae.Code == amqp091.NotFound) {
		return retry.NewPermanent(err)
	}
	if errors.Is(err, amqp091.ErrCredentials) || errors.Is(err, amqp091.ErrSASL) {
		return retry.NewPermanent(err)
	}
	return retry.NewRetryable(err)
}

// explain adds what to do about a missing exchange.
func explain(err error, exchange string) error {
	var ae *amqp091.Error
	if errors.As(err, &ae) && ae.Server && ae.Code == amqp091.NotFound {
		return fmt.Errorf("exchange %q does not exist: create it, or set declare: true: %w", exchange, err)
	}
	return err
}

// publishID reads the HeaderPublishID header back from a basic.return.
func publishID(v any) (uint64, bool) {
	switch n := v.(type) {
	case int64:
		return uint64(n), n > 0
	case int32:
		return uint64(n), n > 0
	case uint32:
		return uint64(n), n > 0
	}
	return 0, false
}

// headerCarrier lets a propagator write into AMQP headers.
type headerCarrier amqp091.Table

var _ propagation.TextMapCarrier = headerCarrier{}

func (c headerCarrier) Get(key string) string {
	s, _ := c[key].(string)
	return s
}

func (c headerCarrier) Set(key, value string) { c[key] = value }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/observability"
	"github.com/courierhq/courier/spool"
)

// Publisher is the producer API: it stores events in the outbox and reports
// success only once JetStream acknowledged them (after fsync, with the
// default sync policy). It is safe for concurrent use.
//
// Concurrent and asynchronous emits are grouped: one sender turns whatever is
// queued into a single JetStream atomic batch, which the server writes with
// one fsync. That is how durable emit goes far beyond one fsync per event
// without weakening "stored before acknowledged". Batches leave in emit order
// over one connection, so one producer's events are stored in its order.
//
// With a spool (WithSpool), an event the outbox cannot take for a reason
// that passes (unreachable, no acknowledgement, no stream, no quorum) is
// fsynced in the spool instead and reported with ErrSpooled; the Publisher
// sends the spool's events every second while it is connected. Events sent
// from the spool are stored after those emitted meanwhile: the spool keeps
// every event, not the order across an outage.
type Publisher struct {
	nc           *nats.Conn
	ownsConn     bool
	tracer       trace.Tracer
	node         string
	maxEventSize int
	maxBatch     int
	ackTimeout   time.Duration

	queue    chan *Pending
	inflight chan struct{} // one token per batch awaiting its ack
	inbox    string
	sub      *nats.Subscription

	// queueMu guards closing the queue against a concurrent EmitAsync.
	queueMu sync.RWMutex
	closed  bool

	mu        sync.Mutex
	waiting   map[string]*batch // by reply token
	nextID    uint64
	done      chan struct{}
	fallbacks sync.WaitGroup

	creds Credentials // for Dial

	// Spool: nil unless WithSpool.
	spool     *spool.Spool
	log       *slog.Logger
	connState *connState // why the connection is down; nil unless Dial made it
	flushMu   sync.Mutex // one flush of the publisher's spool at a time
	stopFlush context.CancelFunc
	flushDone chan struct{}
}

// Pending is an emit whose outcome is not known yet.
type Pending struct {
	span  trace.Span
	trace propagation.MapCarrier // W3C trace context for the event's headers
	env   event.Envelope
	data  []byte
	done  chan struct{}
	err   error
	dup   bool
	// spooled: the outbox could not take the event and it is in the spool.
	spooled bool
	// fromSpool: the event is being sent from the spool, so a failure
	// leaves it there instead of writing it again.
	fromSpool bool
	onSet     sync.Once
}

// Done is closed once the outcome is known.
func (p *Pending) Done() <-chan struct{} { return p.done }

// ID is the event id (known at once, also on failure).
func (p *Pending) ID() string { return p.env.ID }

// Err is the outcome; valid after Done is closed.
func (p *Pending) Err() error { return p.err }

// Duplicate reports that the outbox already held this id; valid after Done.
func (p *Pending) Duplicate() bool { return p.dup }

// Spooled reports that the outbox could not take the event and it is stored
// in the spool, to be sent later (Err wraps ErrSpooled); valid after Done.
func (p *Pending) Spooled() bool { return p.spooled }

// Wait blocks until the outcome is known or ctx ends.
func (p *Pending) Wait(ctx context.Context) (string, error) {
	select {
	case <-p.done:
		return p.env.ID, p.err
	case <-ctx.Done():
		return p.env.ID, fmt.Errorf("wait for outbox acknowledgement of %s: %w", p.env.ID, ctx.Err())
	}
}

func (p *Pending) finish(err error, dup bool) { p.settle(err, dup, false) }

func (p *Pending) settle(err error, dup, spooled bool) {
	p.onSet.Do(func() {
		p.err, p.dup, p.spooled = err, dup, spooled
		if err != nil {
			p.span.RecordError(err)
			p.span.SetStatus(codes.Error, err.Error())
		}
		p.span.SetAttributes(attribute.Bool("courier.duplicate", dup))
		if spooled {
			p.span.SetAttributes(attribute.Bool("courier.spooled", true))
		}
		p.span.End()
		close(p.done)
	})
}

// batch is what one acknowledgement answers: one event, or an atomic batch.
type batch struct {
	items []*Pending
	timer *time.Timer
	group *group
}

// group is what the sender sent at once; it holds one in-flight slot until
// all its batches are answered.
type group struct{ left atomic.Int32 }

// PublisherOption configures a Publisher.
type PublisherOption func(*Publisher)

// WithNode sets the node id stamped on events that carry none.
func WithNode(node string) PublisherOption { return func(p *Publisher) { p.node = node } }

// WithMaxEventSize rejects larger encoded events before they are sent.
func WithMaxEventSize(n int) PublisherOption { return func(p *Publisher) { p.maxEventSize = n } }

// WithAckTimeout bounds the wait for the outbox's acknowledgement.
func WithAckTimeout(d time.Duration) PublisherOption { return func(p *Publisher) { p.ackTimeout = d } }

// WithTracerProvider traces each emit as a producer span whose context
// travels with the event to every delivery attempt.
func WithTracerProvider(tp trace.TracerProvider) PublisherOption {
	return func(p *Publisher) { p.tracer = tp.Tracer(tracerName) }
}

const tracerName = "github.com/courierhq/courier/outbox"

// WithSpool stores in sp, instead of failing, every event the outbox cannot
// take for a reason that passes, and sends sp's events in the background
// while the Publisher lives. With a spool, Dial returns a Publisher even
// when nothing answers: it spools until the outbox can be reached.
func WithSpool(sp *spool.Spool) PublisherOption { return func(p *Publisher) { p.spool = sp } }

// WithCredentials presents creds when Dial connects (an outbox with
// outbox.auth, or TLS with a private CA).
func WithCredentials(creds Credentials) PublisherOption {
	return func(p *Publisher) { p.creds = creds }
}

// WithLogger receives what the background flush of the spool has to say
// (a failure, once per outage; files moved to bad/). Default: nothing.
func WithLogger(l *slog.Logger) PublisherOption { return func(p *Publisher) { p.log = l } }

// WithMaxBatch caps the events grouped into one atomic batch (at most 1000,
// JetStream's limit).
func WithMaxBatch(n int) PublisherOption {
	return func(p *Publisher) { p.maxBatch = min(max(n, 1), 1000) }
}

// Defaults of a Publisher.
const (
	DefaultMaxEventSize = event.DefaultMaxSize
	DefaultAckTimeout   = 10 * time.Second
	defaultMaxBatch     = 500
	maxBatchesInFlight  = 2
)

// Dial connects to the outbox at url and returns a Publisher that owns the
// connection. It fails with ErrUnreachable when nothing answers within
// timeout, unless a spool is given (WithSpool): then the Publisher spools
// events while it keeps trying to connect.
func Dial(ctx context.Context, url string, timeout time.Duration, opts ...PublisherOption) (*Publisher, error) {
	var probe Publisher
	for _, o := range opts {
		o(&probe)
	}
	var (
		nc    *nats.Conn
		state *connState
		err   error
	)
	creds, err := probe.creds.Options()
	if err != nil {
		return nil, err
	}
	if probe.spool != nil {
		state = &connState{}
		nc, err = connectRetrying(ctx, url, "courier-emit", timeout, state, creds...)
	} else {
		nc, err = Connect(ctx, url, "courier-emit", timeout, creds...)
	}
	if err != nil {
		return nil, err
	}
	p, err := NewPublisher(nc, opts...)
	if err != nil {
		nc.Close()
		return nil, err
	}
	p.ownsConn = true
	p.connState = state
	return p, nil
}

// NewPublisher returns a Publisher on an existing connection.
func NewPublisher(nc *nats.Conn, opts ...PublisherOption) (*Publisher, error) {
	p := &Publisher{
		nc:           nc,
		maxEventSize: DefaultMaxEventSize,
		maxBatch:     defaultMaxBatch,
		ackTimeout:   DefaultAckTimeout,
		inflight:     make(chan struct{}, maxBatchesInFlight),
		tracer:       noop.NewTracerProvider().Tracer(tracerName),
		waiting:      map[string]*batch{},
		inbox:        nats.NewInbox(),
		done:         make(chan struct{}),
	}
	for _, o := range opts {
		o(p)
	}
	p.queue = make(chan *Pending, p.maxBatch*maxBatchesInFlight)
	sub, err := nc.Subscribe(p.inbox+".*", p.onAck)
	if err != nil {
		return nil, fmt.Errorf("subscribe to outbox acknowledgements: %w", err)
	}
	p.sub = sub
	go p.send()
	if p.spool != nil {
		if p.log == nil {
			p.log = slog.New(slog.DiscardHandler)
		}
		ctx, cancel := context.WithCancel(context.Background())
		p.stopFlush, p.flushDone = cancel, make(chan struct{})
		go p.flushLoop(ctx)
	}
	return p, nil
}

// Emit stores e and returns its id once the outbox acknowledged it. A
// missing id, time or level is filled in; an event emitted again with the same
// id is stored once. With a spool, an error wrapping ErrSpooled means the
// event is safe in the spool; this includes ctx ending before the outbox
// answered, since the event may be on its way already.
func (p *Publisher) Emit(ctx context.Context, e event.Envelope) (string, error) {
	pe, err := p.EmitAsync(ctx, e)
	if err != nil {
		return e.ID, err
	}
	id, err := pe.Wait(ctx)
	if err == nil || p.spool == nil {
		return id, err
	}
	select {
	case <-pe.done:
		return id, pe.err
	default:
	}
	// The caller stops waiting while the event's fate is open: spool it, so
	// the answer is definite. Should the outbox store it after all, sending
	// it again from the spool stores nothing more.
	if perr := p.spool.Put(pe.env); perr != nil {
		return id, fmt.Errorf("%w; writing it to the spool failed too: %v", err, perr)
	}
	return id, p.spooledError(id, fmt.Errorf("no acknowledgement before the caller stopped waiting: %w", ctx.Err()))
}

// EmitAsync queues e and returns at once; the Pending reports the outcome.
// It blocks only while the queue is full (backpressure) or until ctx ends,
// and, with a spool while the outbox is unreachable, while it writes the
// event to the spool. Validation errors are returned at once.
func (p *Publisher) EmitAsync(ctx context.Context, e event.Envelope) (*Pending, error) {
	return p.emitAsync(ctx, e, false)
}

func (p *Publisher) emitAsync(ctx context.Context, e event.Envelope, fromSpool bool) (*Pending, error) {
	if err := e.Complete(p.node); err != nil {
		return nil, err
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(&e)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	if p.maxEventSize > 0 && len(data) > p.maxEventSize {
		return nil, fmt.Errorf("%w: event %s is %d bytes, the maximum is %d", ErrTooLarge, e.ID, len(data), p.maxEventSize)
	}
	// The producer span covers the wait for the outbox's acknowledgement;
	// its context travels in the event's headers to every delivery.
	_, span := p.tracer.Start(ctx, "send "+StreamEvents, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingDestinationName(EventSubject(e.Type)),
			semconv.MessagingMessageID(e.ID),
			attribute.String("courier.event.type", e.Type),
		))
	carrier := propagation.MapCarrier{}
	observability.Propagator().Inject(trace.ContextWithSpan(ctx, span), carrier)
	pe := &Pending{env: e, data: data, done: make(chan struct{}), span: span, trace: carrier, fromSpool: fromSpool}
	p.queueMu.RLock()
	defer p.queueMu.RUnlock()
	if p.closed {
		pe.finish(ErrClosed, false)
		return nil, ErrClosed
	}
	if p.spool != nil && !p.nc.IsConnected() {
		if fromSpool {
			err := p.notConnected()
			pe.finish(err, false)
			return nil, err
		}
		// Sent now, it would sit in the client's memory until the
		// connection is back, lost if the process ends first.
		p.fail(pe, p.notConnected())
		return pe, nil
	}
	select {
	case p.queue <- pe:
		return pe, nil
	case <-ctx.Done():
		err := fmt.Errorf("queue event %s: %w", e.ID, ctx.Err())
		pe.finish(err, false)
		return nil, err
	}
}

// Connected reports whether the Publisher's connection to the outbox is up;
// while it is down, an emit without a spool waits for the ack timeout.
func (p *Publisher) Connected() bool { return p.nc.IsConnected() }

// Close sends what is queued, waits for the acknowledgements (each bounded
// by the ack timeout) and releases the connection if the Publisher owns it.
func (p *Publisher) Close() {
	if p.stopFlush != nil {
		p.stopFlush()
		<-p.flushDone
	}
	p.queueMu.Lock()
	if p.closed {
		p.queueMu.Unlock()
		return
	}
	p.closed = true
	close(p.queue)
	p.queueMu.Unlock()
	<-p.done
	// Every batch holds an inflight token until acknowledged or timed out.
	for range maxBatchesInFlight {
		p.inflight <- struct{}{}
	}
	p.fallbacks.Wait()
	_ = p.sub.Unsubscribe()
	if p.ownsConn {
		p.nc.Close()
	}
}

// send is the single sender: it groups queued events into batches and
// publishes them in order. It takes an in-flight slot before it looks at the
// queue, so while earlier batches are being written, new events pile up and
// leave together in one larger batch (one fsync) instead of many small ones.
func (p *Publisher) send() {
	defer close(p.done)
	for {
		p.inflight <- struct{}{}
		first, ok := <-p.queue
		if !ok {
			<-p.inflight
			return
		}
		items := []*Pending{first}
	fill:
		for len(items) < p.maxBatch {
			select {
			case pe, ok := <-p.queue:
				if !ok {
					break fill
				}
				items = append(items, pe)
			default:
				break fill
			}
		}
		p.publish(items)
	}
}

// publish sends one batch: a plain publish for a single event, a JetStream
// atomic batch for several. The reply arrives in onAck.
//
// An atomic batch has a fixed cost (JetStream stages it in a store of its
// own before committing it with one fsync); below minAtomicBatch events it
// is cheaper to pipeline single publishes, each fsynced on its own.
func (p *Publisher) publish(items []*Pending) {
	g := &group{}
	if len(items) >= minAtomicBatch {
		g.left.Store(1)
		p.send1(items, g)
		return
	}
	g.left.Store(int32(len(items)))
	for i := range items {
		p.send1(items[i:i+1], g)
	}
}

// minAtomicBatch is where an atomic batch starts to beat single publishes
// (measured on 2-core machines with fsync before acknowledgement). With
// two groups in flight, 64 waiting producers split into groups of about
// 32: at a threshold of 32, half of them went out as single publishes and
// 64 producers made 4-7k events/s; at 12 to 24, 13-19k. On a machine with
// slower fsync (BenchmarkAtomicBatch: 0.40 ms per publish, 2.8 ms per
// batch of 16), thresholds of 8 and 16 gave the same 9.2-10.7k.
const minAtomicBatch = 16

func (p *Publisher) send1(items []*Pending, g *group) {
	p.mu.Lock()
	p.nextID++
	token := strconv.FormatUint(p.nextID, 36)
	b := &batch{items: items, group: g}
	p.waiting[token] = b
	b.timer = time.AfterFunc(p.ackTimeout, func() { p.resolve(token, nil, fmt.Errorf("%w within %s", ErrNoAck, p.ackTimeout)) })
	p.mu.Unlock()

	msgs := p.messages(items, token)
	msgs[len(msgs)-1].Reply = p.inbox + "." + token
	for _, m := range msgs {
		if err := p.nc.PublishMsg(m); err != nil {
			p.resolve(token, nil, fmt.Errorf("publish to outbox: %w", err))
			return
		}
	}
}

// messages builds the NATS messages of a batch; the last one commits it.
func (p *Publisher) messages(items []*Pending, token string) []*nats.Msg {
	batchID := p.inbox[len(nats.InboxPrefix):] + "-" + token
	msgs := make([]*nats.Msg, len(items))
	for i, pe := range items {
		m := nats.NewMsg(EventSubject(pe.env.Type))
		m.Data = pe.data
		m.Header.Set(nats.MsgIdHdr, pe.env.ID)
		for k, v := range pe.trace {
			m.Header.Set(k, v)
		}
		if len(items) > 1 {
			m.Header.Set("Nats-Batch-Id", batchID)
			m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
			if i == len(items)-1 {
				m.Header.Set("Nats-Batch-Commit", "1")
			}
		}
		msgs[i] = m
	}
	return msgs
}

func (p *Publisher) onAck(m *nats.Msg) {
	token := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		p.resolve(token, nil, fmt.Errorf("%w: no responders on %s", ErrNoStream, StreamEvents))
		return
	}
	ack, err := parsePubAck(m.Data)
	p.resolve(token, &ack, err)
}

// resolve completes a batch once. A batch of several that failed as a whole
// (a re-emitted id, for one, fails the batch, while alone it is just a
// duplicate) is split and retried, so each event gets its own outcome.
func (p *Publisher) resolve(token string, ack *pubAck, err error) {
	p.mu.Lock()
	b, ok := p.waiting[token]
	delete(p.waiting, token)
	p.mu.Unlock()
	if !ok {
		return
	}
	b.timer.Stop()
	// The group's in-flight slot is released once all its batches are
	// settled, retries included: while a refused batch is being split, the
	// sender waits for the slot instead of piling more batches up.
	settled := func() {
		if b.group.left.Add(-1) == 0 {
			<-p.inflight
		}
	}
	split := errors.Is(err, errBatchHasDuplicate) || errors.Is(err, errBatchesBusy)
	if err != nil && p.spool != nil && (len(b.items) == 1 || !split) && spoolable(err) {
		// Writing to the spool means an fsync per event: not on the
		// goroutine that reads the other acknowledgements.
		p.fallbacks.Add(1)
		go func() {
			defer p.fallbacks.Done()
			for _, pe := range b.items {
				p.fail(pe, err)
			}
		}()
		settled()
		return
	}
	if err == nil || len(b.items) == 1 || !split {
		dup := err == nil && ack.Duplicate && len(b.items) == 1
		for _, pe := range b.items {
			pe.finish(err, dup)
		}
		settled()
		return
	}
	p.fallbacks.Add(1)
	go func() {
		defer p.fallbacks.Done()
		defer settled()
		if errors.Is(err, errBatchesBusy) {
			// Too many atomic batches in flight on the stream (other
			// publishers): single publishes do not count against that.
			for i := range b.items {
				p.bisect(b.items[i : i+1])
			}
			return
		}
		p.bisect(b.items)
	}()
}

// bisect commits items synchronously, halving a refused batch until the
// refused events stand alone: a few duplicates cost a few extra commits,
// not one fsync per event of the batch.
func (p *Publisher) bisect(items []*Pending) {
	p.mu.Lock()
	p.nextID++
	token := strconv.FormatUint(p.nextID, 36)
	p.mu.Unlock()
	msgs := p.messages(items, token)
	last := msgs[len(msgs)-1]
	var err error
	for _, m := range msgs[:len(msgs)-1] {
		if err = p.nc.PublishMsg(m); err != nil {
			break
		}
	}
	var resp *nats.Msg
	if err == nil {
		resp, err = p.nc.RequestMsg(last, p.ackTimeout)
	}
	var ack pubAck
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		err = fmt.Errorf("%w: %v", ErrNoStream, err)
	case errors.Is(err, nats.ErrTimeout):
		err = fmt.Errorf("%w within %s", ErrNoAck, p.ackTimeout)
	case err != nil:
		err = fmt.Errorf("publish to outbox: %w", err)
	default:
		ack, err = parsePubAck(resp.Data)
	}
	if err == nil || len(items) == 1 || !errors.Is(err, errBatchHasDuplicate) {
		for _, pe := range items {
			if err != nil {
				p.fail(pe, err)
				continue
			}
			pe.finish(nil, ack.Duplicate && len(items) == 1)
		}
		return
	}
	half := len(items) / 2
	p.bisect(items[:half])
	p.bisect(items[half:])
}

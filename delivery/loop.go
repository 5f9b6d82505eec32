package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/courierhq/courier/delivery/breaker"
	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/observability"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/retry"
	"github.com/courierhq/courier/sinks"
)

// Config is one sink's delivery settings.
type Config struct {
	Name        string
	Sink        sinks.Sink
	Filter      event.Filter
	Policy      retry.Policy
	Concurrency int
	// Timeout bounds one attempt, as a backstop to the sink's own timeout.
	Timeout time.Duration
	// DrainTimeout bounds how long in-flight attempts may finish after
	// shutdown began; those still running are then cancelled and naked
	// for redelivery.
	DrainTimeout time.Duration
	// Node is recorded in dead letters.
	Node string
	// Ordered delivers events with the same key one at a time, in outbox
	// order, also across retries; events without a key are not held back.
	Ordered bool
	// AckWait is the consumer's ack wait; held events are kept alive well
	// within it.
	AckWait time.Duration
	// Attempts, when set, records every attempt's outcome.
	Attempts AttemptRecorder
	// States holds the sink's enabled/disabled state shared by every node
	// (nil: kept in memory only).
	States StateStore
	// Breaker configures the sink's circuit breaker (see breaker.Config).
	Breaker breaker.Config
	// Limiter, when set, paces the attempts (a sink's rate limit).
	Limiter *rate.Limiter
	// ParkAfter: retry waits longer than this move the event to the end of
	// the outbox (default DefaultParkAfter).
	ParkAfter time.Duration
	// Tracer and Meter receive the loop's spans and metrics (nil: none).
	Tracer trace.TracerProvider
	Meter  metric.MeterProvider
}

// Stats are a loop's running totals.
type Stats struct {
	Delivered    atomic.Uint64
	Retried      atomic.Uint64
	DeadLettered atomic.Uint64
	Filtered     atomic.Uint64
	// Parked counts events moved to the end of the outbox to wait for a
	// later retry.
	Parked atomic.Uint64
	// CircuitOpen is whether the sink's circuit breaker is open.
	CircuitOpen atomic.Bool
	// Disabled is whether the sink is disabled (410 Gone, or an operator).
	Disabled atomic.Bool
}

// Loop delivers the events of one sink's consumer.
type Loop struct {
	cfg     Config
	cons    jetstream.Consumer
	dlq     DeadLetterStore
	retries Requeuer
	brk     *breaker.Breaker
	keys    keyQueues
	keeper  *keeper
	acks    *acker
	lastErr atomic.Pointer[string]
	log     *slog.Logger
	now     func() time.Time
	stats   Stats
	tel     telemetry
}

const (
	fetchWait    = time.Second
	maxFetch     = 256
	errorBackoff = time.Second
)

// NewLoop returns a loop over cons for the configured sink.
func NewLoop(cfg Config, cons jetstream.Consumer, dlq DeadLetterStore, retries Requeuer, log *slog.Logger) (*Loop, error) {
	if cfg.ParkAfter <= 0 {
		cfg.ParkAfter = DefaultParkAfter
	}
	cfg.Concurrency = max(cfg.Concurrency, 1)
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	tel, err := newTelemetry(cfg.Name, cfg.Tracer, cfg.Meter)
	if err != nil {
		return nil, err
	}
	cfg.Breaker = cfg.Breaker.WithDefaults()
	return &Loop{cfg: cfg, cons: cons, dlq: dlq, retries: retries, log: log.With("sink", cfg.Name), now: time.Now, tel: tel,
		brk: breaker.New(cfg.Breaker), keys: keyQueues{q: map[string][]jetstream.Msg{}}, keeper: newKeeper(cfg.AckWait / 3)}, nil
}

// LastError is the sink's most recent failed attempt (time and error), or
// empty.
func (l *Loop) LastError() string {
	if p := l.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

// Stats returns the loop's counters.
func (l *Loop) Stats() *Stats { return &l.stats }

// Run delivers until ctx ends, then stops fetching and lets in-flight
// attempts finish within the drain timeout.
func (l *Loop) Run(ctx context.Context) error {
	// Attempts run on their own context so that shutdown lets them finish
	// instead of cutting every request at once.
	attemptCtx, cancelAttempts := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelAttempts()
	go l.keeper.run(attemptCtx) // ends with the last attempt
	l.acks = startAcker(l.log)
	defer l.acks.stop() // after the drain below: every attempt has ended
	var wg sync.WaitGroup
	slots := make(chan struct{}, l.cfg.Concurrency)
	// A fixed set of goroutines attempts the events, one per slot: a
	// goroutine per event cost its start and, as an attempt's frames
	// outgrow a new goroutine's stack, a stack copy each time.
	work := make(chan jetstream.Msg)
	var workers sync.WaitGroup
	for range l.cfg.Concurrency {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for msg := range work {
				l.handle(attemptCtx, msg)
				release(slots, 1)
			}
		}()
	}
	stateChanged := make(chan struct{}, 1)
	if l.cfg.States != nil {
		err := l.cfg.States.Watch(ctx, l.cfg.Name, func(st outbox.SinkState) {
			if was := l.stats.Disabled.Swap(st.Disabled); was != st.Disabled {
				l.log.Info("sink state changed", "disabled", st.Disabled, "reason", st.Reason)
			}
			select {
			case stateChanged <- struct{}{}:
			default:
			}
		})
		if err != nil {
			l.log.Warn("cannot watch the sink's state; an operator's enable reaches this node only after a restart", "err", err)
		}
	}

	for ctx.Err() == nil {
		if l.stats.Disabled.Load() {
			select {
			case <-stateChanged:
			case <-ctx.Done():
			}
			continue
		}
		if open, _ := l.brk.State(); open {
			// The endpoint is failing: fetch nothing until the next probe,
			// unless an attempt still in flight closes the circuit first.
			if l.brk.WaitProbe(ctx) && ctx.Err() == nil {
				l.probe(ctx, attemptCtx, &wg, slots)
			}
			continue
		}
		n := l.reserve(ctx, slots)
		if n == 0 {
			break
		}
		batch, err := l.cons.Fetch(n, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			release(slots, n)
			l.log.Warn("fetch from outbox failed", "err", err)
			sleep(ctx, errorBackoff)
			continue
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			if l.skipOthers(msg) {
				release(slots, 1)
				continue
			}
			if l.cfg.Ordered {
				if key := event.StoredKey(msg.Data()); key != "" {
					release(slots, 1) // the key's worker takes a slot per attempt
					l.dispatchOrdered(ctx, attemptCtx, key, msg, &wg, slots)
					continue
				}
			}
			work <- msg // a worker is free or about to be: the slot is held for it
		}
		release(slots, n-got)
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			l.log.Warn("fetch from outbox ended with an error", "err", err)
			sleep(ctx, errorBackoff)
		}
	}

	close(work)
	drained := make(chan struct{})
	go func() { workers.Wait(); wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(l.cfg.DrainTimeout):
		l.log.Warn("in-flight deliveries did not finish in time; cancelling them for redelivery", "drain_timeout", l.cfg.DrainTimeout)
		cancelAttempts()
		<-drained
	}
	return nil
}

// probe attempts one event while the circuit is open; its outcome closes
// the circuit or pushes the next probe further out. With ordering by key, a
// keyed event still goes through its key's worker, behind the key's earlier
// events.
func (l *Loop) probe(runCtx, attemptCtx context.Context, wg *sync.WaitGroup, slots chan struct{}) {
	batch, err := l.cons.Fetch(1, jetstream.FetchMaxWait(fetchWait))
	if err != nil {
		return
	}
	for msg := range batch.Messages() {
		if l.skipOthers(msg) {
			continue
		}
		if l.cfg.Ordered {
			if key := event.StoredKey(msg.Data()); key != "" {
				l.dispatchOrdered(runCtx, attemptCtx, key, msg, wg, slots)
				// Its key's worker attempts it; wait as long as an attempt
				// may take (or until it closes the circuit) rather than
				// fetch another probe at once, which against an endpoint
				// that hangs fetched one event after another.
				l.brk.WaitClosed(runCtx, l.cfg.Timeout+time.Second)
				continue
			}
		}
		l.handle(attemptCtx, msg)
	}
}

// reserve takes at least one free slot (waiting for it) and then as many
// more as are free, up to maxFetch. It returns 0 when ctx ended.
func (l *Loop) reserve(ctx context.Context, slots chan struct{}) int {
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for n < maxFetch {
		select {
		case slots <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

func release(slots chan struct{}, n int) {
	for range n {
		<-slots
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// skipOthers acknowledges a retry or replay addressed to another sink,
// which the consumer reads because it reads the whole outbox (see
// outbox.ForSink), and reports whether msg was one.
func (l *Loop) skipOthers(msg jetstream.Msg) bool {
	if outbox.ForSink(msg.Subject(), l.cfg.Name) {
		return false
	}
	l.acks.ack(msg, "") // lost, it comes back after the ack wait and is skipped again
	return true
}

// handle runs one attempt and settles the message.
func (l *Loop) handle(ctx context.Context, msg jetstream.Msg) { l.attempt(ctx, msg, 0) }

// attempt runs one attempt and settles the message, except that with
// ordering by key a retry is not settled: it returns the delay, and the
// key's worker holds the event (and its key) until then. earlier counts the
// attempts already made while the event was held.
//
// It is a sequence of steps, each of which may settle the message and end
// the attempt: admit (decode, filter, disabled sink), waitOrPark (a parked
// event not yet due), send, judge (the breaker and Decide), report
// (telemetry and the attempt log) and settle.
func (l *Loop) attempt(ctx context.Context, msg jetstream.Msg, earlier int) (holdFor time.Duration) {
	md, err := msg.Metadata()
	if err != nil {
		l.log.Error("message without JetStream metadata; leaving it for redelivery", "err", err)
		return 0
	}
	l.keeper.hold(msg)
	defer l.keeper.release(msg)
	env, ok := l.admit(ctx, msg, md)
	if !ok {
		return 0
	}
	lin := readLineage(msg, md)
	if l.waitOrPark(ctx, msg, md, lin, env.Type) {
		return 0
	}
	number := lin.attempt(md) + earlier
	ctx, span := l.startSpan(ctx, msg, &env, number)
	defer span.End()
	res, ok := l.send(ctx, msg, &env)
	if !ok {
		span.SetAttributes(attribute.String("courier.delivery.outcome", outcomeInterrupted))
		return 0
	}
	d := l.judge(ctx, res, number, lin.stored)
	l.report(ctx, span, &env, number, res, d)
	return l.settle(ctx, msg, md, lin, &env, number, res, d)
}

// sent is what one Send did.
type sent struct {
	start, end time.Time
	err        error
}

// admit decodes the event and settles what is not to be sent: bytes that
// are not an event (dead-lettered), an event the filter skips
// (acknowledged) and one fetched just as the sink was disabled (left for
// later). It reports whether to go on.
func (l *Loop) admit(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata) (event.Envelope, bool) {
	env, err := event.DecodeStored(msg.Data())
	if err != nil {
		l.settleUndecodable(ctx, msg, md, err)
		return env, false
	}
	if !l.cfg.Filter.MatchEvent(&env) {
		l.stats.Filtered.Add(1)
		l.tel.count(ctx, outcomeFiltered)
		l.ack(msg, &env)
		return env, false
	}
	if l.stats.Disabled.Load() {
		_ = msg.NakWithDelay(time.Second)
		return env, false
	}
	return env, true
}

// startSpan opens the attempt's consumer span, continuing the producer's
// trace from the event's headers; the sink's own client span and the
// receiver's spans hang below it.
func (l *Loop) startSpan(ctx context.Context, msg jetstream.Msg, env *event.Envelope, number int) (context.Context, trace.Span) {
	ctx = observability.Propagator().Extract(ctx, observability.NATSCarrier(msg.Headers()))
	ctx, span := l.tel.tracer.Start(ctx, l.tel.spanName, l.tel.consumerSpan)
	if span.IsRecording() { // with tracing off (the default) none of it is kept
		span.SetAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingDestinationName(outbox.StreamEvents),
			semconv.MessagingConsumerGroupName(outbox.ConsumerName(l.cfg.Name)),
			semconv.MessagingMessageID(env.ID),
			attribute.String("courier.sink", l.cfg.Name),
			attribute.String("courier.event.type", env.Type),
			attribute.Int("courier.delivery.attempt", number),
		)
		if seq := msg.Headers().Get(outbox.ReplayedHeader); seq != "" {
			span.AddEvent("replayed", trace.WithAttributes(attribute.String("courier.dead_letter.seq", seq)))
		}
	}
	return ctx, span
}

// send waits for the rate limit's turn and sends. When the worker is
// shutting down meanwhile, that was no fair attempt: the event is handed
// back at once and send reports false.
func (l *Loop) send(ctx context.Context, msg jetstream.Msg, env *event.Envelope) (sent, bool) {
	if l.cfg.Limiter != nil {
		if err := l.cfg.Limiter.Wait(ctx); err != nil {
			_ = msg.Nak()
			return sent{}, false
		}
	}
	res := sent{start: l.now()}
	sendCtx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	res.err = l.cfg.Sink.Send(sendCtx, env)
	cancel()
	if res.err != nil && ctx.Err() != nil {
		_ = msg.Nak()
		return sent{}, false
	}
	res.end = l.now()
	return res, true
}

// judge feeds the outcome to the circuit breaker and decides.
func (l *Loop) judge(ctx context.Context, res sent, number int, stored time.Time) Decision {
	outage, _ := l.brk.State() // before this attempt's outcome is recorded
	switch opened, closed := l.brk.Record(res.err, res.start, res.end); {
	case opened:
		l.stats.CircuitOpen.Store(true)
		l.log.WarnContext(ctx, "circuit opened: the endpoint keeps failing; fetching stops and one event probes it at a growing interval",
			"failures", l.cfg.Breaker.Failures, "err", res.err)
	case closed:
		l.stats.CircuitOpen.Store(false)
		l.log.InfoContext(ctx, "circuit closed: the endpoint answers again; delivering at full speed")
	}
	d := Decide(l.cfg.Policy, number, stored, res.end, res.err)
	if outage {
		d = duringOutage(l.cfg.Policy, d, stored, res.end)
	}
	return d
}

// report records the attempt: span, last error, metrics, attempt log.
func (l *Loop) report(ctx context.Context, span trace.Span, env *event.Envelope, number int, res sent, d Decision) {
	outcome := d.Action.outcome()
	took := res.end.Sub(res.start)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("courier.delivery.outcome", outcome))
	}
	if res.err != nil {
		msg := res.end.UTC().Format(time.RFC3339) + " " + res.err.Error()
		l.lastErr.Store(&msg)
		span.RecordError(res.err)
		span.SetStatus(codes.Error, res.err.Error())
		if st := retry.Classify(res.err).Status; st != 0 {
			span.SetAttributes(attribute.Int("http.response.status_code", st))
		}
	}
	l.tel.attemptDone(ctx, outcome, took)
	l.recordAttempt(env, number, outcome, took, res.err)
}

// settle carries the decision out: acknowledge, retry (or, for an ordered
// key, return the delay for the key's worker to hold the event), dead
// letter, or disable the sink.
func (l *Loop) settle(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, lin lineage, env *event.Envelope, number int, res sent, d Decision) (holdFor time.Duration) {
	cause := res.err
	if d.Action == Ack {
		l.stats.Delivered.Add(1)
		l.tel.count(ctx, outcomeDelivered)
		l.tel.delivered(ctx, res.end.Sub(env.Time))
		l.ack(msg, env)
		return 0
	}
	// Made only here: a logger with fields per delivered event was about 1.5%
	// of a backlog drain's CPU, and nothing is logged for those.
	log := l.log.With("event_id", env.ID, "event_type", env.Type, "attempt", number)
	switch d.Action {
	case Retry:
		l.stats.Retried.Add(1)
		l.tel.count(ctx, outcomeRetried)
		trace.SpanFromContext(ctx).SetAttributes(attribute.String("courier.delivery.retry_in", d.Delay.String()))
		log.WarnContext(ctx, "delivery failed; will retry", "err", cause, "retry_in", d.Delay.Round(time.Millisecond))
		if l.cfg.Ordered && env.Key != "" {
			return max(d.Delay, time.Millisecond)
		}
		if err := l.scheduleRetry(ctx, msg, md, lin, number, d.Delay, env.Type); err != nil {
			log.WarnContext(ctx, "could not schedule the retry as planned; the outbox redelivers the event", "err", err)
		}
	case DeadLetter:
		l.deadLetter(ctx, msg, md, number, env, d.Reason, cause, log)
	case Disable:
		l.disable(ctx, d.Reason, log)
		// The event waits in the outbox for the sink to be enabled again.
		_ = msg.Nak()
	}
	return 0
}

// disable stops the sink on every node until an operator enables it.
func (l *Loop) disable(ctx context.Context, reason string, log *slog.Logger) {
	if l.stats.Disabled.Swap(true) {
		return
	}
	log.ErrorContext(ctx, "sink disabled; its events wait in the outbox until `worker sinks enable` is run", "reason", reason)
	if l.cfg.States == nil {
		return
	}
	st := outbox.SinkState{Disabled: true, Reason: reason, At: l.now().UTC(), Node: l.cfg.Node}
	if err := l.cfg.States.Put(context.WithoutCancel(ctx), l.cfg.Name, st); err != nil {
		log.ErrorContext(ctx, "could not record the sink as disabled; other nodes keep sending", "err", err)
	}
}

// ack acknowledges a settled event, in a burst with others (acker).
func (l *Loop) ack(msg jetstream.Msg, env *event.Envelope) { l.acks.ack(msg, env.ID) }

// deadLetter stores the dead letter and only then terminates the original:
// Term counts as an acknowledgement, so the order is what keeps the event.
func (l *Loop) deadLetter(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, attempt int, env *event.Envelope, reason string, cause error, log *slog.Logger) {
	ce := retry.Classify(cause)
	dl := outbox.DeadLetter{
		OutboxSeq: md.Sequence.Stream, Sink: l.cfg.Name, Reason: reason, Attempts: attempt,
		LastStatus: ce.Status, LastError: cause.Error(), LastResponse: ce.Response,
		DeadAt: l.now().UTC(), Node: l.cfg.Node, Event: *env,
		Trace: traceFields(msg.Headers()),
	}
	// Storing the dead letter may take a while after a long attempt: keep
	// the event from being redelivered (and sent again) meanwhile.
	_ = msg.InProgress()
	putCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := l.dlq.Put(putCtx, dl); err != nil {
		delay := deadLetterUnstored(l.cfg.Policy, attempt)
		log.ErrorContext(ctx, "could not store dead letter; keeping the event in the outbox and retrying", "err", err, "retry_in", delay)
		_ = msg.NakWithDelay(delay)
		return
	}
	l.stats.DeadLettered.Add(1)
	l.tel.count(ctx, outcomeDeadLettered)
	trace.SpanFromContext(ctx).AddEvent("dead_lettered", trace.WithAttributes(
		attribute.String("courier.dead_letter.reason", reason), attribute.Int("courier.delivery.attempt", attempt)))
	log.ErrorContext(ctx, "event dead-lettered", "reason", reason, "err", cause, "status", ce.Status)
	if err := msg.TermWithReason("dead-lettered: " + reason); err != nil {
		log.Warn("terminate after dead-lettering failed; the event may be dead-lettered twice", "err", err)
	}
}

// settleUndecodable dead-letters a message that is not an envelope (written
// to the outbox by something other than emit), keeping its bytes.
func (l *Loop) settleUndecodable(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, cause error) {
	env := event.Envelope{
		ID:   msg.Headers().Get(nats.MsgIdHdr),
		Type: "courier.undecodable",
		Time: md.Timestamp,
		Data: jsonString(msg.Data()),
	}
	if env.ID == "" {
		env.ID = fmt.Sprintf("stream-seq-%d", md.Sequence.Stream)
	}
	l.deadLetter(ctx, msg, md, int(md.NumDelivered), &env, "not a Courier event", retry.NewPermanent(cause), l.log.With("event_id", env.ID))
}

func jsonString(b []byte) json.RawMessage {
	s, _ := json.Marshal(string(b))
	return s
}

// traceFields keeps only the trace-context headers of a message.
func traceFields(h nats.Header) map[string]string {
	all := observability.NATSCarrier(h)
	out := map[string]string{}
	for _, f := range observability.Propagator().Fields() {
		if v := all.Get(f); v != "" {
			out[f] = v
		}
	}
	return out
}

// recordAttempt adds the attempt to the attempt log, if there is one.
func (l *Loop) recordAttempt(env *event.Envelope, attempt int, outcome string, took time.Duration, err error) {
	if l.cfg.Attempts == nil {
		return
	}
	a := outbox.Attempt{EventID: env.ID, Sink: l.cfg.Name, Number: attempt, Outcome: outcome,
		Duration: took, Node: l.cfg.Node, At: l.now().UTC()}
	if err != nil {
		ce := retry.Classify(err)
		a.Error, a.Status, a.Response = err.Error(), ce.Status, ce.Response
	}
	if err := l.cfg.Attempts.Record(a); err != nil {
		l.log.Debug("attempt not logged", "err", err)
	}
}

package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/eventlog"
	"github.com/courierhq/courier/observability"
	"github.com/courierhq/courier/outbox"
)

// EventLogSubject is where a worker answers event log requests
// (eventlog.Request as JSON) for operator commands; any node answers, the
// nearest first.
const EventLogSubject = "courier.eventlog.v1"

const eventLogQueue = "courier-eventlog"

// Event log ingest bounds.
const (
	logBatch   = 500
	logMaxWait = 500 * time.Millisecond
	logAckWait = 30 * time.Second
	// logGather is how long a batch smaller than logBatch waits for more
	// before it is written. Written as they came, events at 1k/s went one
	// per transaction, each commit an fsync: 0.4 ms of CPU per event, more
	// than delivering it. The log is up to this much later; the outbox's
	// trim and event_log.max_lag are in seconds.
	logGather = 50 * time.Millisecond
)

// eventLogState is a node's event log and what it counted.
type eventLogState struct {
	store    *eventlog.Store
	lag      atomic.Int64
	events   atomic.Int64
	attempts atomic.Int64
	purged   atomic.Int64
	behind   atomic.Bool // the outbox no longer waits for this log
}

// logShared reports whether the nodes share one database (PostgreSQL),
// and so one consumer per stream, instead of a SQLite log each.
func (w *Worker) logShared() bool { return w.cfg.EventLog.URL != "" }

// ensureEventLogConsumers creates the event log's consumers on the outbox
// and the attempts stream, which start at the beginning of each: the log
// holds everything from the node's first start on. With the log off it
// removes this node's own, and with a shared database the ones of its
// former SQLite log, so that they do not hold the outbox.
func (w *Worker) ensureEventLogConsumers(ctx context.Context, js jetstream.JetStream) error {
	shared := w.logShared()
	remove := func(stream, name string) error {
		if err := js.DeleteConsumer(ctx, stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("remove event log consumer %s: %w", name, err)
		}
		return nil
	}
	names := map[string]string{
		outbox.StreamEvents:   outbox.LogConsumer(w.cfg.NodeID, shared),
		outbox.StreamAttempts: outbox.AttemptsLogConsumer(w.cfg.NodeID, shared),
	}
	own := map[string]string{
		outbox.StreamEvents:   outbox.LogConsumer(w.cfg.NodeID, false),
		outbox.StreamAttempts: outbox.AttemptsLogConsumer(w.cfg.NodeID, false),
	}
	for stream, name := range names {
		// A shared consumer is the other nodes' too: only this node's own
		// goes, when the log is off or has moved to a shared database.
		if shared || !w.cfg.EventLog.On() {
			if err := remove(stream, own[stream]); err != nil {
				return err
			}
		}
		if !w.cfg.EventLog.On() {
			continue
		}
		cfg := jetstream.ConsumerConfig{
			Durable:       name,
			Description:   "Courier event log of node " + w.cfg.NodeID,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     logAckPolicy(shared),
			AckWait:       logAckWait,
			MaxDeliver:    -1,
			MaxAckPending: 4 * logBatch,
		}
		// No filter, replays included: a consumer filtered to the events
		// alone keeps its ack floor below the replays at the end of the
		// outbox, and would hold them there.
		if _, err := js.CreateOrUpdateConsumer(ctx, stream, cfg); err != nil {
			return fmt.Errorf("set up event log consumer %s: %w", name, err)
		}
	}
	return nil
}

// logAckPolicy: a node's own log acknowledges a batch with its last
// message. Nodes sharing one consumer (and one database) must acknowledge
// each message: acknowledging all up to a sequence would also acknowledge
// what another node fetched and has not committed yet.
func logAckPolicy(shared bool) jetstream.AckPolicy {
	if shared {
		return jetstream.AckExplicitPolicy
	}
	return jetstream.AckAllPolicy
}

// runEventLog feeds the log from both streams, purges it, and answers
// requests, until ctx ends. The consumers are opened within startCtx, and
// like every other part of a node's start, wait for the cluster's quorum: a
// node rejoining while leaders are still elected would otherwise exit.
func (w *Worker) runEventLog(startCtx, ctx context.Context) error {
	shared := w.logShared()
	var events, attempts jetstream.Consumer
	err := w.untilQuorum(startCtx, func(ctx context.Context) error {
		var err error
		if events, err = w.js.Consumer(ctx, outbox.StreamEvents, outbox.LogConsumer(w.cfg.NodeID, shared)); err != nil {
			return fmt.Errorf("open event log consumer: %w", err)
		}
		if attempts, err = w.js.Consumer(ctx, outbox.StreamAttempts, outbox.AttemptsLogConsumer(w.cfg.NodeID, shared)); err != nil {
			return fmt.Errorf("open event log attempts consumer: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sub, err := w.nc.QueueSubscribe(EventLogSubject, eventLogQueue, func(m *nats.Msg) { w.answerEventLog(ctx, m) })
	if err != nil {
		return fmt.Errorf("serve event log requests: %w", err)
	}
	w.wg.Add(4)
	go func() {
		defer w.wg.Done()
		<-ctx.Done()
		_ = sub.Drain()
	}()
	go func() {
		defer w.wg.Done()
		w.ingest(ctx, events, w.logEvents)
	}()
	go func() {
		defer w.wg.Done()
		w.ingest(ctx, attempts, w.logAttempts)
	}()
	go func() {
		defer w.wg.Done()
		w.purgeEventLog(ctx)
	}()
	return nil
}

// ingest fetches batches from c and hands them to write, acknowledging a
// batch (all of it, with its last message) only once write committed it.
// A failed write is tried again, in order, until it succeeds.
func (w *Worker) ingest(ctx context.Context, c jetstream.Consumer, write func(context.Context, []jetstream.Msg) error) {
	failing := false
	y := yielder{w: w}
	for ctx.Err() == nil {
		y.wait(ctx)
		msgs, err := fetchLogBatch(c)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("event log: fetch", "err", err)
				sleepCtx(ctx, time.Second)
			}
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		for ctx.Err() == nil {
			err := write(ctx, msgs)
			if err == nil {
				break
			}
			if !failing {
				w.log.Error("event log: write failed; delivery goes on, the log retries", "db", w.elog.store.Where(), "err", err)
				failing = true
			}
			sleepCtx(ctx, time.Second)
		}
		if failing && ctx.Err() == nil {
			w.log.Info("event log: writing again", "db", w.elog.store.Where())
			failing = false
		}
		if err := ackLogBatch(msgs, w.elog.store.Shared()); err != nil && ctx.Err() == nil {
			w.log.Warn("event log: acknowledge batch", "err", err)
		}
	}
}

// The log yields to delivery: on two cores, writing the log while a sink
// drains a backlog took 40% of the drain's speed (a 100k drain in 10.4 s
// against 6.3 s without the log). While a sink of this node that is able to
// deliver has more than logYieldBacklog events pending, the log waits, for
// up to half of event_log.max_lag, then catches up at its own speed.
const (
	logYieldBacklog = 1000
	logYieldCheck   = 250 * time.Millisecond
)

// yielder holds one ingest loop back while delivery is busy.
type yielder struct {
	w        *Worker
	since    time.Time // when this stretch of yielding began
	checked  time.Time
	busy     bool
	maxYield time.Duration
}

func (y *yielder) wait(ctx context.Context) {
	if y.maxYield == 0 {
		y.maxYield = y.w.cfg.EventLog.MaxLag / 2
	}
	for ctx.Err() == nil {
		if time.Since(y.checked) >= logYieldCheck {
			y.busy, y.checked = y.w.deliveryBusy(ctx), time.Now()
		}
		if !y.busy {
			y.since = time.Time{}
			return
		}
		if y.since.IsZero() {
			y.since = time.Now()
		}
		if time.Since(y.since) > y.maxYield {
			return // the log must not fall past its bound
		}
		sleepCtx(ctx, logYieldCheck)
	}
}

// deliveryBusy reports whether a sink of this node that can deliver (not
// disabled, circuit closed) has a backlog.
func (w *Worker) deliveryBusy(ctx context.Context) bool {
	for name, loop := range w.loops() {
		st := loop.Stats()
		if st.Disabled.Load() || st.CircuitOpen.Load() {
			continue
		}
		c, err := w.js.Consumer(ctx, outbox.StreamEvents, outbox.ConsumerName(name))
		if err == nil && c.CachedInfo().NumPending > logYieldBacklog {
			return true
		}
	}
	return false
}

// ackLogBatch acknowledges a committed batch as logAckPolicy says.
func ackLogBatch(msgs []jetstream.Msg, shared bool) error {
	if !shared {
		return msgs[len(msgs)-1].Ack()
	}
	var first error
	for _, m := range msgs {
		if err := m.Ack(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// fetchLogBatch takes what is waiting, up to logBatch; with nothing
// waiting it blocks until something comes, up to logMaxWait. A batch short
// of logBatch then gathers what else comes within logGather, no longer: a
// log that waited to fill its batches would hold the outbox's trim back by
// that wait.
func fetchLogBatch(c jetstream.Consumer) ([]jetstream.Msg, error) {
	msgs, err := fetchLogWaiting(c)
	if err != nil || len(msgs) == 0 || len(msgs) >= logBatch {
		return msgs, err
	}
	more, err := c.Fetch(logBatch-len(msgs), jetstream.FetchMaxWait(logGather))
	if err != nil {
		return msgs, nil // written now; the rest comes with the next batch
	}
	for m := range more.Messages() {
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// fetchLogWaiting takes what is waiting, up to logBatch, or blocks for the
// next event, up to logMaxWait.
func fetchLogWaiting(c jetstream.Consumer) ([]jetstream.Msg, error) {
	batch, err := c.FetchNoWait(logBatch)
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	// Messages that came with an error are written all the same: with
	// AckAll, skipping them and acknowledging a later batch would
	// acknowledge them unwritten.
	if len(msgs) > 0 {
		return msgs, nil
	}
	if err := batch.Error(); err != nil {
		return nil, err
	}
	batch, err = c.Fetch(1, jetstream.FetchMaxWait(logMaxWait))
	if err != nil {
		return nil, err
	}
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	return msgs, nil
}

func (w *Worker) logEvents(ctx context.Context, msgs []jetstream.Msg) error {
	envs := make([]event.Envelope, 0, len(msgs))
	traces := make([]string, 0, len(msgs))
	for _, m := range msgs {
		if !outbox.IsEventSubject(m.Subject()) {
			continue // a replay: a delivery again of an event already logged
		}
		e, err := event.DecodeStored(m.Data())
		if err != nil {
			w.log.Warn("event log: stored event unreadable; not logged", "subject", m.Subject(), "err", err)
			continue
		}
		envs = append(envs, e)
		traces = append(traces, traceID(m.Headers()))
	}
	n, err := w.elog.store.AddTracedEvents(ctx, envs, traces)
	w.elog.events.Add(int64(n))
	return err
}

// traceID is the trace id in a stored event's traceparent header, or "".
func traceID(h nats.Header) string {
	sc := trace.SpanContextFromContext(observability.Propagator().Extract(context.Background(), observability.NATSCarrier(h)))
	if !sc.TraceID().IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

func (w *Worker) logAttempts(ctx context.Context, msgs []jetstream.Msg) error {
	var recs []eventlog.Attempt
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("attempts batch metadata: %w", err)
		}
		if m.Subject() == outbox.SubjectLogOps {
			// Flush what came before, so ops apply in stream order.
			if err := w.addAttempts(ctx, recs); err != nil {
				return err
			}
			recs = recs[:0]
			w.applyLogOp(ctx, m)
			continue
		}
		as, err := outbox.DecodeAttempts(m.Data())
		if err != nil {
			w.log.Warn("event log: attempts batch unreadable; not logged", "seq", md.Sequence.Stream, "err", err)
			continue
		}
		for i, a := range as {
			recs = append(recs, eventlog.Attempt{Batch: md.Sequence.Stream, Index: i, Attempt: a})
		}
	}
	return w.addAttempts(ctx, recs)
}

func (w *Worker) addAttempts(ctx context.Context, recs []eventlog.Attempt) error {
	n, err := w.elog.store.AddAttempts(ctx, recs)
	w.elog.attempts.Add(int64(n))
	return err
}

// headerLogOpNode names the node that applied an op before publishing it.
const headerLogOpNode = "Courier-Node"

// applyLogOp applies another node's archive or delete to this node's log.
func (w *Worker) applyLogOp(ctx context.Context, m jetstream.Msg) {
	if m.Headers().Get(headerLogOpNode) == w.cfg.NodeID || w.elog.store.Shared() {
		return // applied when it was asked for
	}
	var req eventlog.Request
	if err := json.Unmarshal(m.Data(), &req); err != nil {
		w.log.Warn("event log: op unreadable", "err", err)
		return
	}
	if resp := w.elog.store.Do(ctx, req); resp.Error != "" && !resp.NotFound {
		w.log.Warn("event log: apply "+req.Op+" from another node", "err", resp.Error)
	}
}

// answerEventLog serves one request from an operator command.
func (w *Worker) answerEventLog(ctx context.Context, m *nats.Msg) {
	var req eventlog.Request
	resp := eventlog.Response{}
	if err := json.Unmarshal(m.Data, &req); err != nil {
		resp = eventlog.Response{Error: "bad request: " + err.Error(), BadRequest: true}
	} else {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp = w.EventLogDo(rctx, req)
		cancel()
	}
	data, err := json.Marshal(&resp)
	if err != nil {
		data, _ = json.Marshal(eventlog.Response{Error: err.Error()})
	}
	_ = m.Respond(data)
}

// EventLogDo answers an event log request on this node: queries from its
// log, with every sink's delivery state; archive and delete on every
// node's log.
func (w *Worker) EventLogDo(ctx context.Context, req eventlog.Request) eventlog.Response {
	if w.elog == nil {
		return eventlog.Response{Error: "the event log is off on node " + w.cfg.NodeID + " (event_log.enabled: false)"}
	}
	resp := w.elog.store.Do(ctx, req)
	if resp.Error != "" {
		return resp
	}
	switch req.Op {
	case eventlog.OpList:
		w.addSinkStates(ctx, resp.Events)
	case eventlog.OpShow:
		resp.Event.Deliveries = w.addSinkStates(ctx, []eventlog.Event{*resp.Event})[0].Deliveries
	case eventlog.OpArchive, eventlog.OpDelete:
		if !w.elog.store.Shared() {
			w.publishLogOp(ctx, req)
		}
	}
	return resp
}

// publishLogOp hands an archive or delete to the other nodes' logs.
func (w *Worker) publishLogOp(ctx context.Context, req eventlog.Request) {
	data, err := json.Marshal(&req)
	if err == nil {
		m := nats.NewMsg(outbox.SubjectLogOps)
		m.Header.Set(headerLogOpNode, w.cfg.NodeID)
		m.Data = data
		_, err = w.js.PublishMsg(ctx, m)
	}
	if err != nil {
		w.log.Error("event log: "+req.Op+" applied on this node only; the other nodes' logs keep those events", "err", err)
	}
}

// addSinkStates completes each event's deliveries with the sinks defined
// now that have made no attempt: filtered when the sink's filter excludes
// the event, else pending.
func (w *Worker) addSinkStates(ctx context.Context, events []eventlog.Event) []eventlog.Event {
	sinks := w.definedSinks(ctx)
	for i := range events {
		e := &events[i]
		for _, sc := range sinks {
			if _, ok := e.Deliveries[sc.Name]; ok {
				continue
			}
			state := eventlog.Pending
			if f, err := sc.Filter(); err == nil && !f.MatchEvent(&e.Envelope) {
				state = eventlog.Filtered
			}
			if e.Deliveries == nil {
				e.Deliveries = map[string]eventlog.Delivery{}
			}
			e.Deliveries[sc.Name] = eventlog.Delivery{State: state}
		}
	}
	return events
}

// definedSinks are the sinks of the registry that parse on this node.
func (w *Worker) definedSinks(ctx context.Context) []config.Sink {
	recs, err := w.reg.Records(ctx)
	if err != nil {
		return nil
	}
	settings, _, _ := w.reg.Settings(ctx)
	var out []config.Sink
	for _, r := range recs {
		if sc, err := config.ParseSink([]byte(r.Definition), w.cfg.LookupEnv(), settings.Sink, w.cfg.Kinds()); err == nil {
			out = append(out, sc)
		}
	}
	return out
}

// purgeCheck is the longest the purge waits before reading the settings
// again, so a changed event-purge-interval applies soon.
const purgeCheck = 10 * time.Second

// purgeEventLog deletes events older than event-purge-delay days every
// event-purge-interval, as CloudStack's purge thread does.
func (w *Worker) purgeEventLog(ctx context.Context) {
	var last time.Time
	for {
		settings, _, err := w.reg.Settings(ctx)
		if err == nil {
			if wait := settings.EventPurgeInterval - time.Since(last); wait > 0 {
				sleepCtx(ctx, min(wait, purgeCheck))
			} else {
				last = time.Now()
				if settings.EventPurgeDelay > 0 {
					cutoff := time.Now().Add(-time.Duration(settings.EventPurgeDelay) * 24 * time.Hour)
					n, err := w.elog.store.Purge(ctx, cutoff)
					switch {
					case err != nil && ctx.Err() == nil:
						w.log.Warn("event log: purge", "err", err)
					case n > 0:
						w.elog.purged.Add(n)
						w.log.Info("event log: purged events older than event-purge-delay", "events", n, "days", settings.EventPurgeDelay)
					}
				}
				continue
			}
		} else {
			sleepCtx(ctx, purgeCheck)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// updateEventLogLag reads how far the log is behind the outbox.
func (w *Worker) updateEventLogLag(ctx context.Context) {
	c, err := w.js.Consumer(ctx, outbox.StreamEvents, outbox.LogConsumer(w.cfg.NodeID, w.logShared()))
	if err != nil {
		return
	}
	info := c.CachedInfo()
	w.elog.lag.Store(int64(info.NumPending) + int64(info.NumAckPending))
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// trim removes delivered events from the outbox. An event log that fell
// past event_log.max_lag no longer holds them, and this node says so when
// its own log crosses that line, either way.
func (w *Worker) trim(ctx context.Context) {
	res, err := outbox.Trim(ctx, w.js, outbox.LogBound{MaxLag: w.cfg.EventLog.MaxLag, MaxBytes: w.cfg.MaxLagBytes()})
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("trim delivered events from the outbox", "err", err)
		}
		return
	}
	if w.elog == nil {
		return
	}
	behind := slices.Contains(res.Behind, outbox.LogConsumer(w.cfg.NodeID, w.logShared()))
	switch was := w.elog.behind.Swap(behind); {
	case behind && !was:
		w.log.Error("event log fell behind the outbox by more than event_log.max_lag: the outbox no longer waits for it, and events trimmed meanwhile will be missing from this node's log",
			"max_lag", w.cfg.EventLog.MaxLag, "lag_events", w.elog.lag.Load())
	case !behind && was:
		w.log.Info("event log caught up within event_log.max_lag: the outbox waits for it again")
	}
}

// registerEventLogMetrics exports what the event log counted, its lag and
// its size on disk.
func (w *Worker) registerEventLogMetrics() error {
	mp := w.meter()
	if mp == nil || w.elog == nil {
		return nil
	}
	m := mp.Meter("github.com/courierhq/courier/worker")
	el := w.elog
	events, err := m.Int64ObservableCounter("courier.event_log.events", metric.WithDescription("Events written to this node's event log."), metric.WithUnit("{event}"))
	if err != nil {
		return fmt.Errorf("metric courier.event_log.events: %w", err)
	}
	attempts, err := m.Int64ObservableCounter("courier.event_log.attempts", metric.WithDescription("Delivery attempts written to this node's event log."), metric.WithUnit("{attempt}"))
	if err != nil {
		return fmt.Errorf("metric courier.event_log.attempts: %w", err)
	}
	purged, err := m.Int64ObservableCounter("courier.event_log.purged", metric.WithDescription("Events purged from the event log after event-purge-delay days."), metric.WithUnit("{event}"))
	if err != nil {
		return fmt.Errorf("metric courier.event_log.purged: %w", err)
	}
	lag, err := m.Int64ObservableGauge("courier.event_log.lag", metric.WithDescription("Outbox events this node's event log has yet to write."), metric.WithUnit("{event}"))
	if err != nil {
		return fmt.Errorf("metric courier.event_log.lag: %w", err)
	}
	behind, err := m.Int64ObservableGauge("courier.event_log.behind", metric.WithDescription("1 while this node's event log is past event_log.max_lag and no longer holds the outbox."))
	if err != nil {
		return fmt.Errorf("metric courier.event_log.behind: %w", err)
	}
	size, err := m.Int64ObservableGauge("courier.event_log.size", metric.WithDescription("Size of the event log database."), metric.WithUnit("By"))
	if err != nil {
		return fmt.Errorf("metric courier.event_log.size: %w", err)
	}
	dropped, err := m.Int64ObservableCounter("courier.event_log.attempts_dropped", metric.WithDescription("Attempt records not logged because the attempts stream could not take them."), metric.WithUnit("{attempt}"))
	if err != nil {
		return fmt.Errorf("metric courier.event_log.attempts_dropped: %w", err)
	}
	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		o.ObserveInt64(events, el.events.Load())
		o.ObserveInt64(attempts, el.attempts.Load())
		o.ObserveInt64(purged, el.purged.Load())
		o.ObserveInt64(lag, el.lag.Load())
		o.ObserveInt64(behind, boolInt(el.behind.Load()))
		if n, err := el.store.Size(ctx); err == nil {
			o.ObserveInt64(size, n)
		}
		if w.deps.attempts != nil {
			o.ObserveInt64(dropped, w.deps.attempts.Dropped())
		}
		return nil
	}, events, attempts, purged, lag, behind, size, dropped)
	if err != nil {
		return fmt.Errorf("register event log metrics: %w", err)
	}
	return nil
}

package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/delivery"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/registry"
	"github.com/courierhq/courier/sinks"
)

// loopDeps are the outbox parts every delivery loop shares.
type loopDeps struct {
	dlq      *outbox.DeadLetters
	retries  *outbox.Retries
	states   *outbox.SinkStates
	attempts *outbox.AttemptLog
}

// runningSink is one sink this node delivers to.
type runningSink struct {
	cfg    config.Sink
	sink   sinks.Sink
	loop   *delivery.Loop
	cancel context.CancelFunc
	done   chan struct{}
}

// resyncInterval re-reads the registry even without a change signal, so a
// node whose watch was interrupted still converges. Losing a member stalls
// a watch for a while (its consumer lived there): a sink added right after
// a node stopped took up to 19 s to start on a node still up, which
// `sinks add` waits for. It costs a few reads of the registry per interval.
const resyncInterval = 10 * time.Second

// followRegistry applies every change of sink definitions and settings
// until ctx ends.
func (w *Worker) followRegistry(ctx context.Context, changes <-chan struct{}) {
	resync := time.NewTicker(resyncInterval)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-resync.C:
		}
		w.reconcile(ctx)
	}
}

// reconcile makes the running loops match the registry: it starts sinks
// defined meanwhile, restarts the ones whose definition or defaults
// changed, and stops the deleted ones. It returns the sinks it could not
// run, by name.
func (w *Worker) reconcile(ctx context.Context) map[string]error {
	readCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	// The overrides before the settings made of them: a change in between
	// is then applied but reported as not yet, never the other way round,
	// and the change's own event reconciles again at once.
	overrides, oerr := w.reg.Overrides(readCtx)
	desired, settings, errs, err := w.reg.Sinks(readCtx)
	cancel()
	if err == nil {
		err = oerr
	}
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("read sink definitions; keeping the running sinks", "err", err)
		}
		return map[string]error{"registry": err}
	}
	if w.logLevel != nil {
		var lvl slog.Level
		if lvl.UnmarshalText([]byte(settings.LogLevel)) == nil && w.logLevel.Level() != lvl {
			w.logLevel.Set(lvl)
			w.log.Info("log level changed", "level", settings.LogLevel)
		}
	}
	if !reflect.DeepEqual(w.guard.Policy(), settings.Sink.Webhook) {
		w.guard.Set(settings.Sink.Webhook)
		w.log.Info("webhook destinations changed", "allow", fmt.Sprint(settings.Sink.Webhook.Allow), "https_only", settings.Sink.Webhook.HTTPSOnly)
	}
	for name, err := range errs {
		w.log.Error("a stored definition does not apply on this node; running the sinks that do", "sink", name, "err", err)
	}
	// Stopping a loop drains it (up to shutdown_timeout): that happens
	// outside w.mu, so heartbeats and metrics go on meanwhile. Only one
	// reconcile runs at a time (Start's, then followRegistry's).
	w.mu.Lock()
	current := maps.Clone(w.running)
	w.mu.Unlock()
	setRunning := func(name string, r *runningSink) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if r == nil {
			delete(w.running, name)
		} else {
			w.running[name] = r
		}
	}
	want := map[string]bool{}
	for _, sc := range desired {
		want[sc.Name] = true
		cur := current[sc.Name]
		if cur != nil && reflect.DeepEqual(cur.cfg, sc) {
			continue
		}
		if cur != nil {
			w.log.Info("sink definition changed: restarting its delivery", "sink", sc.Name)
			w.stopSink(cur)
			setRunning(sc.Name, nil)
		}
		r, err := w.startSink(ctx, sc)
		if err != nil {
			w.log.Error("start delivery", "sink", sc.Name, "err", err)
			errs[sc.Name] = err
			continue
		}
		setRunning(sc.Name, r)
		if cur == nil && w.ready.Load() {
			w.log.Info("sink defined: delivery started", "sink", sc.Name)
		}
	}
	for name, cur := range current {
		// A definition that no longer parses here is not a deletion: the
		// loop keeps running the last good one.
		if want[name] || errs[name] != nil {
			continue
		}
		w.log.Info("sink deleted: delivery stopped", "sink", name)
		w.stopSink(cur)
		setRunning(name, nil)
	}
	problems := map[string]string{}
	for name, err := range errs {
		problems[name] = err.Error()
	}
	applied := map[string]string{}
	for _, st := range config.SettingNames() {
		if v, err := settings.Get(st.Name); err == nil {
			applied[st.Name] = v
		}
	}
	w.mu.Lock()
	w.problems = problems
	w.settings = appliedSettings{values: applied, fingerprint: registry.Fingerprint(overrides)}
	w.mu.Unlock()
	select { // the commands that changed a definition wait for this
	case w.beatSoon <- struct{}{}:
	default:
	}
	return errs
}

// errConsumerUnavailable marks a sink that did not start because its
// consumer could not be opened: in a cluster re-forming after nodes were
// killed, JetStream answers 503 for a while, which passes.
var errConsumerUnavailable = errors.New("outbox unavailable")

// startSink builds the sink and starts its delivery loop on the sink's
// existing consumer. It never creates the consumer: that is the registry's
// job, so a node cannot bring back the consumer of a sink deleted
// meanwhile.
func (w *Worker) startSink(ctx context.Context, sc config.Sink) (*runningSink, error) {
	cons, err := w.js.Consumer(ctx, outbox.StreamEvents, outbox.ConsumerName(sc.Name))
	if err != nil {
		return nil, fmt.Errorf("%w: open consumer of sink %s: %w", errConsumerUnavailable, sc.Name, err)
	}
	sink, err := BuildSink(sc, w.version, w.tracer(), w.guard)
	if err != nil {
		return nil, err
	}
	filter, _ := sc.Filter() // validated with the definition
	var limiter *rate.Limiter
	if perSecond, burst, _ := sc.RateLimit(); perSecond > 0 {
		limiter = rate.NewLimiter(rate.Limit(perSecond), burst)
	}
	loop, err := delivery.NewLoop(delivery.Config{
		Name: sc.Name, Sink: sink, Filter: filter, Policy: sc.Retry,
		Concurrency: sc.Concurrency, Timeout: sc.AttemptTimeout(),
		DrainTimeout: w.cfg.ShutdownTimeout, Node: w.cfg.NodeID,
		Tracer: w.tracer(), Meter: w.meter(),
		ParkAfter: w.parkAfter, Limiter: limiter, Breaker: sc.CircuitBreaker, States: w.deps.states,
		Attempts: w.attemptRecorder(), Ordered: sc.Ordering == "key", AckWait: sc.AckWait(),
	}, cons, w.deps.dlq, w.deps.retries, w.log)
	if err != nil {
		_ = sink.Close(ctx)
		return nil, err
	}
	loopCtx, cancel := context.WithCancel(ctx)
	r := &runningSink{cfg: sc, sink: sink, loop: loop, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_ = loop.Run(loopCtx)
		w.log.Debug("delivery loop stopped", "sink", sc.Name)
	}()
	return r, nil
}

// stopSink stops fetching, lets in-flight deliveries finish (the loop
// bounds that by the shutdown timeout) and closes the sink.
func (w *Worker) stopSink(r *runningSink) {
	r.cancel()
	<-r.done
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.ShutdownTimeout)
	defer cancel()
	_ = r.sink.Close(ctx)
}

// stopSinks stops every running sink.
func (w *Worker) stopSinks() {
	w.mu.Lock()
	current := w.running
	w.running = map[string]*runningSink{}
	w.mu.Unlock()
	for _, r := range current {
		w.stopSink(r)
	}
}

// sinkNames lists the sinks this node runs, sorted.
func (w *Worker) sinkNames() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Sorted(maps.Keys(w.running))
}

// loops is a snapshot of the running loops, by sink.
func (w *Worker) loops() map[string]*delivery.Loop {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]*delivery.Loop, len(w.running))
	for name, r := range w.running {
		out[name] = r.loop
	}
	return out
}

// SinkConfig is the definition a running sink uses on this node (zero when
// this node runs no sink of that name).
func (w *Worker) SinkConfig(name string) config.Sink {
	w.mu.Lock()
	defer w.mu.Unlock()
	if r := w.running[name]; r != nil {
		return r.cfg
	}
	return config.Sink{}
}

// attemptRecorder is where loops record attempts: none with the event log
// off (a nil *outbox.AttemptLog would make a non-nil interface).
func (w *Worker) attemptRecorder() delivery.AttemptRecorder {
	if w.deps.attempts == nil {
		return nil
	}
	return w.deps.attempts
}

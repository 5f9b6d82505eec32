// Package worker assembles one Courier node from its configuration: the
// embedded (or external) outbox, its streams, and one delivery loop per sink.
// It holds no delivery logic of its own; it wires the packages that do.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/delivery"
	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/eventlog"
	"github.com/courierhq/courier/internal/bearer"
	"github.com/courierhq/courier/internal/dirlock"
	"github.com/courierhq/courier/internal/netguard"
	"github.com/courierhq/courier/observability"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/registry"
	"github.com/courierhq/courier/sinks"
	"github.com/courierhq/courier/spool"
	"github.com/courierhq/courier/status"
)

// Worker is a running node.
type Worker struct {
	cfg    *config.File
	log    *slog.Logger
	server *outbox.Server // nil with an external outbox
	nc     *nats.Conn
	js     jetstream.JetStream
	cancel context.CancelFunc
	wg     sync.WaitGroup
	url    string
	failed chan error

	reg      *registry.Registry
	apiToken string
	accounts map[string]string // account token to account name
	deps     loopDeps
	logLevel *slog.LevelVar

	// mu guards running: the delivery loop of every sink this node runs,
	// changed live as definitions change.
	mu      sync.Mutex
	running map[string]*runningSink
	// problems are the sinks this node does not run, and why (guarded by
	// mu): heartbeats carry them, so that sinks add can say per node.
	problems map[string]string
	// settings are the settings this node applies, for its heartbeat.
	settings appliedSettings
	// beatSoon asks for a heartbeat now: the sinks this node runs changed.
	beatSoon chan struct{}

	expiryCheck time.Duration
	parkAfter   time.Duration
	nodes       *outbox.Nodes
	started     time.Time
	version     string
	oldest      atomic.Int64 // nanoseconds
	tel         *observability.Telemetry
	ready       atomic.Bool
	dirLock     *dirlock.Lock
	elog        *eventLogState // nil with the event log off
	httpIngest  *ingestState   // nil with ingest.listen off
	// guard is what this node's webhooks may reach: the webhook-allow and
	// webhook-https-only settings, applied live.
	guard *netguard.Guard
	// throttle slows down addresses presenting wrong admin tokens.
	throttle *bearer.Throttle
	// connOpts are the worker's credentials for its outbox connections.
	connOpts []nats.Option
}

// Option adjusts a Worker.
type Option func(*Worker)

// WithTelemetry sends the node's spans and metrics to tel's providers.
func WithTelemetry(tel *observability.Telemetry) Option { return func(w *Worker) { w.tel = tel } }

// WithParkAfter sets how long a retry may wait at the event's own outbox
// position before the event moves to the end (default
// delivery.DefaultParkAfter).
func WithParkAfter(d time.Duration) Option { return func(w *Worker) { w.parkAfter = d } }

// WithLogLevel lets the log-level setting (worker config set log-level)
// change the node's log level live.
func WithLogLevel(v *slog.LevelVar) Option { return func(w *Worker) { w.logLevel = v } }

// WithExpiryCheck sets how often the outbox is checked for events that
// expired before every sink confirmed them (default 30s).
func WithExpiryCheck(d time.Duration) Option { return func(w *Worker) { w.expiryCheck = d } }

// Start brings the node up: outbox first, then one loop per sink. On error
// everything started so far is stopped again.
func Start(ctx context.Context, cfg *config.File, version string, log *slog.Logger, opts ...Option) (_ *Worker, err error) {
	w := &Worker{cfg: cfg, log: log, running: map[string]*runningSink{}, beatSoon: make(chan struct{}, 1), expiryCheck: 30 * time.Second, version: version, failed: make(chan error, 1)}
	policy, err := cfg.WebhookPolicy()
	if err != nil {
		return nil, err
	}
	w.guard = netguard.NewGuard(policy)
	w.throttle = bearer.NewThrottle()
	for _, o := range opts {
		o(w)
	}
	defer func() {
		if err != nil {
			if w.cancel != nil {
				w.cancel()
			}
			w.stopSinks()
			w.stopOutbox()
		}
	}()
	// Before anything touches data_dir: two workers on one directory
	// delete each other's acknowledged events. A *dirlock.HeldError says
	// which process holds it.
	if w.dirLock, err = dirlock.Acquire(cfg.DataDir); err != nil {
		return nil, err
	}
	always, interval, err := cfg.Outbox.SyncPolicy()
	if err != nil {
		return nil, err
	}
	if cfg.EventLog.On() {
		store, err := eventlog.Open(ctx, cfg.EventLog.URL, cfg.DataDir)
		if err != nil {
			return nil, err
		}
		w.elog = &eventLogState{store: store}
		log.Info("event log open", "db", store.Where())
	}
	if w.apiToken, err = cfg.Admin.APIToken(); err != nil {
		return nil, err
	}
	if w.accounts, err = cfg.Admin.Accounts(); err != nil {
		return nil, err
	}
	w.url = cfg.Outbox.URL
	if w.url == "" {
		sc := outbox.ServerConfig{
			Name: cfg.NodeID, Listen: cfg.Outbox.Listen, DataDir: cfg.DataDir,
			SyncAlways: always, SyncInterval: interval,
			// Room for the event plus its headers.
			MaxPayload: int32(cfg.Outbox.MaxEventSize) + 64<<10,
			Self:       credentials(cfg), TLS: tlsFiles(cfg.Outbox.TLS),
		}
		if sc.Users, err = serverUsers(cfg); err != nil {
			return nil, err
		}
		if cfg.Cluster.Enabled() {
			sc.Cluster = outbox.ClusterConfig{Name: cfg.Cluster.Name, Listen: cfg.Cluster.Listen, Routes: cfg.Cluster.RouteURLs(),
				User: cfg.Cluster.Auth.User, Password: cfg.Cluster.Auth.Password, TLS: tlsFiles(cfg.Cluster.TLS)}
		}
		if w.server, err = outbox.StartServer(ctx, sc, log); err != nil {
			return nil, err
		}
	}
	// Streams and consumers exist before any producer can reach a single
	// embedded outbox; see outbox.StartServer.
	if err := w.setUp(ctx); err != nil {
		return nil, err
	}
	if w.server != nil {
		if err := w.server.Listen(ctx); err != nil {
			return nil, err
		}
		w.url = w.server.ClientURL()
		log.Info("embedded outbox listening", "url", w.url, "data_dir", cfg.DataDir, "sync", cfg.Outbox.Sync, "cluster", cfg.Cluster.Name)
	}
	if w.connOpts, err = ConnectOptions(cfg); err != nil {
		return nil, err
	}
	if w.nc, err = outbox.Connect(ctx, w.url, "courier-worker-"+cfg.NodeID, 10*time.Second, w.connOpts...); err != nil {
		return nil, err
	}
	if w.js, err = jetstream.New(w.nc); err != nil {
		return nil, fmt.Errorf("open JetStream: %w", err)
	}
	w.deps.dlq, w.deps.retries = outbox.NewDeadLetters(w.js), outbox.NewRetries(w.js)
	if err := w.untilQuorum(ctx, w.openState); err != nil {
		return nil, err
	}
	w.started = time.Now().UTC()
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel = cancel
	// Sinks this node's file defines must start; a definition from another
	// node that does not apply here is logged and left out.
	var errs map[string]error
	if err := w.untilQuorum(ctx, func(context.Context) error {
		errs = w.reconcile(runCtx)
		if err := errs["registry"]; err != nil {
			return err
		}
		for _, s := range cfg.Sinks {
			if err := errs[s.Name]; errors.Is(err, errConsumerUnavailable) {
				return err // the cluster is re-forming: wait, as for the quorum
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read sink definitions: %w", err)
	}
	if len(errs) > 0 {
		for _, s := range cfg.Sinks {
			if err := errs[s.Name]; err != nil {
				return nil, fmt.Errorf("sink %s: %w", s.Name, err)
			}
		}
	}
	if err := w.answerSinkTests(runCtx); err != nil {
		return nil, err
	}
	if err := w.registerGauges(w.deps.dlq); err != nil {
		return nil, err
	}
	if err := w.registerEventLogMetrics(); err != nil {
		return nil, err
	}
	if w.elog != nil {
		if err := w.runEventLog(ctx, runCtx); err != nil {
			return nil, err
		}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.deps.attempts.Run(runCtx)
		}()
	}
	// A node of the cluster dying while this one starts leaves JetStream
	// electing leaders for a few seconds: the watch waits for them, as the
	// steps above do, instead of ending the worker (seen in CI: a node
	// killed just after the others started made one exit with "watch
	// bucket COURIER_SINKS: context deadline exceeded").
	var changes <-chan struct{}
	if err := w.untilQuorum(ctx, func(context.Context) error {
		var err error
		changes, err = w.reg.Changes(runCtx) // the watch lives as long as the node
		return err
	}); err != nil {
		return nil, fmt.Errorf("watch sink definitions: %w", err)
	}
	sp, err := spool.Open(cfg.SpoolDir)
	if err != nil {
		return nil, err
	}
	spoolPub, err := outbox.NewPublisher(w.nc, outbox.WithNode(cfg.NodeID), outbox.WithLogger(log), outbox.WithMaxEventSize(int(cfg.Outbox.MaxEventSize)))
	if err != nil {
		return nil, err
	}
	w.wg.Add(3)
	go func() {
		defer w.wg.Done()
		defer spoolPub.Close()
		w.flushSpool(runCtx, sp, spoolPub)
	}()
	go func() {
		defer w.wg.Done()
		w.followRegistry(runCtx, changes)
	}()
	go func() {
		defer w.wg.Done()
		w.maintainOutbox(runCtx)
	}()
	w.wg.Go(func() { w.heartbeats(runCtx) })
	if w.cfg.Ingest.On() {
		if err := w.startIngest(ctx); err != nil {
			return nil, err
		}
	}
	w.beat(ctx, false)
	w.ready.Store(true)
	log.Info("worker started", "node", cfg.NodeID, "sinks", len(w.sinkNames()))
	return w, nil
}

// AttemptLogMaxAge is how long the attempts stream keeps a batch of attempt
// records (within outbox.attempt_log_max_bytes): a node down for longer
// misses those attempts in its event log.
const AttemptLogMaxAge = 24 * time.Hour

// beat reports this node in the nodes bucket.
func (w *Worker) beat(ctx context.Context, stopped bool) {
	info := outbox.NodeInfo{Node: w.cfg.NodeID, URL: w.url, Version: w.version, Started: w.started,
		Heartbeat: time.Now().UTC(), Stopped: stopped, LastError: map[string]string{}}
	w.mu.Lock()
	if len(w.problems) > 0 {
		info.Problems = maps.Clone(w.problems)
	}
	info.Settings, info.SettingsApplied = w.settings.values, w.settings.fingerprint
	for name, r := range w.running {
		info.Sinks = append(info.Sinks, name)
		if e := r.loop.LastError(); e != "" {
			info.LastError[name] = e
		}
		if r.loop.Stats().CircuitOpen.Load() {
			info.CircuitOpen = append(info.CircuitOpen, name)
		}
	}
	w.mu.Unlock()
	slices.Sort(info.Sinks)
	slices.Sort(info.CircuitOpen)
	if w.elog != nil {
		w.updateEventLogLag(ctx)
		lag := w.elog.lag.Load()
		info.EventLogLag = &lag
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
	expiry := time.NewTicker(w.expiryCheck)
	defer expiry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-trim.C:
			w.trim(ctx)
			w.checkStoreFailure()
		case <-expiry.C:
			w.checkExpiry(ctx)
		}
	}
}

// heartbeats reports this node every HeartbeatInterval, and at once when
// the sinks it runs changed, until ctx ends. Apart from the trim: a trim
// held up by a leader election must not hold up the heartbeat too, or the
// node looks down.
func (w *Worker) heartbeats(ctx context.Context) {
	heartbeat := time.NewTicker(status.HeartbeatInterval)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-heartbeat.C:
		case <-w.beatSoon:
		}
		w.beat(ctx, false)
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

// setUp creates or updates the streams and buckets, brings the file's sinks
// into the registry (each with its consumer), and removes consumers of
// sinks no longer defined. In a cluster it waits for the quorum.
func (w *Worker) setUp(ctx context.Context) error {
	var (
		nc  *nats.Conn
		err error
	)
	if w.server != nil {
		nc, err = w.server.InProcessConn()
	} else {
		var opts []nats.Option
		if opts, err = ConnectOptions(w.cfg); err != nil {
			return err
		}
		nc, err = outbox.Connect(ctx, w.url, "courier-setup-"+w.cfg.NodeID, 10*time.Second, opts...)
	}
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("open JetStream: %w", err)
	}
	return w.untilQuorum(ctx, func(ctx context.Context) error { return w.setUpOnce(ctx, js) })
}

// setUpOnce does the work of setUp once; every step may be repeated.
func (w *Worker) setUpOnce(ctx context.Context, js jetstream.JetStream) error {
	if err := outbox.EnsureStreams(ctx, js, Limits(w.cfg)); err != nil {
		return err
	}
	if err := outbox.EnsureAttemptsStream(ctx, js, AttemptLogMaxAge, int64(w.cfg.Outbox.AttemptLogMaxBytes), w.cfg.Replication()); err != nil {
		return err
	}
	// Before producers can emit: the log's consumers start at the
	// beginning of the outbox, but a trim by another node could remove
	// events before this node's log consumer exists.
	if err := w.ensureEventLogConsumers(ctx, js); err != nil {
		return err
	}
	reg, err := registry.Ensure(ctx, js, w.cfg.Replication(), w.cfg.NodeID, w.cfg.BaseSettings(), w.cfg.Env())
	if err != nil {
		return err
	}
	added, updated, removed, overridden, err := reg.Seed(ctx, w.cfg)
	if err != nil {
		return err
	}
	for _, name := range added {
		w.log.Info("sink added from the configuration file", "sink", name)
	}
	for _, name := range updated {
		w.log.Info("sink changed in the configuration file: definition updated on every node", "sink", name)
	}
	for _, name := range removed {
		w.log.Warn("sink removed from the configuration file: deleted on every node with its consumer", "sink", name)
	}
	for _, name := range overridden {
		w.log.Warn("the configuration file defines this sink differently from its run-time definition (worker sinks add); the run-time definition stays", "sink", name)
	}
	recs, err := reg.Records(ctx)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, r := range recs {
		keep[r.Name] = true
	}
	stale, err := outbox.RemoveStaleConsumers(ctx, js, keep)
	for name, pending := range stale {
		w.log.Warn("sink no longer defined: removed its consumer; its undelivered events are no longer kept for it", "sink", name, "undelivered", pending)
	}
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		w.log.Warn("no sinks defined: emitted events are kept until outbox.max_age, or until the outbox is full, as no sink is to receive them")
	}
	return nil
}

// openState creates or opens the buckets and the attempt log the running
// node uses.
func (w *Worker) openState(ctx context.Context) error {
	replicas := w.cfg.Replication()
	var err error
	if w.deps.states, err = outbox.EnsureSinkStates(ctx, w.js, replicas); err != nil {
		return err
	}
	if w.nodes, err = outbox.EnsureNodes(ctx, w.js, replicas); err != nil {
		return err
	}
	if w.elog != nil {
		w.deps.attempts = outbox.NewAttemptLog(w.js, w.cfg.NodeID, w.log)
	}
	w.reg, err = registry.Open(ctx, w.js, w.cfg.NodeID, w.cfg.BaseSettings(), w.cfg.Env())
	return err
}

// untilQuorum runs fn until it succeeds. On a single node that is at once;
// in a cluster, JetStream refuses or leaves unanswered requests until
// enough nodes have joined (no meta leader, fewer nodes than replicas, a
// rejoining node still catching up), so the node waits and says what it
// waits for, until ctx ends.
func (w *Worker) untilQuorum(ctx context.Context, fn func(context.Context) error) error {
	if !w.cfg.Cluster.Enabled() {
		return fn(ctx)
	}
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(250*time.Millisecond), backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(0))
	var lastLog time.Time
	for {
		// Short attempts: without a meta leader a request is not refused but
		// left unanswered until it times out.
		attemptCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := fn(attemptCtx)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, registry.ErrInvalid) {
			return err // a bad definition does not get better by waiting
		}
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for the cluster's quorum: %w (last: %v)", ctx.Err(), err)
		}
		if time.Since(lastLog) > 10*time.Second {
			w.log.Warn("waiting for the cluster: the outbox needs a quorum of nodes", "cluster", w.cfg.Cluster.Name, "replicas", w.cfg.Cluster.Replicas, "err", err)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
		case <-time.After(b.NextBackOff()):
		}
	}
}

// Limits are the outbox limits the configuration asks for.
func Limits(cfg *config.File) outbox.Limits {
	return outbox.Limits{
		MaxAge:           cfg.Outbox.MaxAge,
		MaxBytes:         int64(cfg.Outbox.MaxBytes),
		MaxEventSize:     int32(cfg.Outbox.MaxEventSize),
		Duplicates:       cfg.Outbox.DuplicateWindow,
		DeadLetterMaxAge: cfg.Outbox.DeadLetterMaxAge,
		Replicas:         cfg.Replication(),
	}
}

// BuildSink constructs the sink a configuration entry describes. tp, when
// not nil, receives the sink's client spans; guard is what webhooks may
// reach (nil: public addresses only).
func BuildSink(sc config.Sink, version string, tp trace.TracerProvider, guard *netguard.Guard) (sinks.Sink, error) {
	format, err := event.ParseFormat(sc.Format)
	if err != nil {
		return nil, err
	}
	if sc.Kind == nil || sc.Settings == nil {
		return nil, fmt.Errorf("sink %s: type %q was not decoded", sc.Name, sc.Type)
	}
	return sc.Kind.New(sc.Settings, sinks.Env{Format: format, Concurrency: sc.Concurrency, Version: version, TracerProvider: tp, Guard: guard})
}

// URL is the outbox URL producers use.
func (w *Worker) URL() string { return w.url }

// Loop returns a sink's delivery loop (nil if this node runs none).
func (w *Worker) Loop(sink string) *delivery.Loop {
	w.mu.Lock()
	defer w.mu.Unlock()
	if r := w.running[sink]; r != nil {
		return r.loop
	}
	return nil
}

// Shutdown stops fetching, lets in-flight deliveries finish (bounded by the
// shutdown timeout), then closes sinks and the outbox in that order.
func (w *Worker) Shutdown(ctx context.Context) {
	w.ready.Store(false)
	w.cancel()
	w.wg.Wait()
	w.beat(ctx, true)
	w.stopSinks()
	if w.deps.attempts != nil {
		// Deliveries that finished while the sinks stopped recorded theirs
		// after the attempt log's last batch.
		if err := w.deps.attempts.Flush(ctx); err != nil {
			w.log.Warn("attempt records not logged at shutdown", "err", err)
		}
	}
	w.stopOutbox()
	w.log.Info("worker stopped")
}

func (w *Worker) stopOutbox() {
	w.stopIngest()
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
	if w.elog != nil {
		if err := w.elog.store.Close(); err != nil {
			w.log.Warn("close event log", "err", err)
		}
	}
	// Only once the server's files are closed may another worker open them.
	if err := w.dirLock.Release(); err != nil {
		w.log.Warn("release data_dir lock", "err", err)
	}
}

// ConnectOptions are what the worker and its commands connect to the
// outbox with: the configured credentials, and an inbox of their own,
// where a producer (who may subscribe to _INBOX.> for its
// acknowledgements) cannot read the events they fetch.
func ConnectOptions(cfg *config.File) ([]nats.Option, error) {
	opts, err := credentials(cfg).Options()
	if err != nil {
		return nil, err
	}
	return append(opts, nats.CustomInboxPrefix(outbox.WorkerInbox)), nil
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

// appliedSettings are the settings a node applies (values by name) and the
// fingerprint of the overrides they came from.
type appliedSettings struct {
	values      map[string]string
	fingerprint string
}

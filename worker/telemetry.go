package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/eventlog"
	"github.com/courierhq/courier/internal/bearer"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/registry"
	"github.com/courierhq/courier/status"
)

// tracer is the provider for spans, nil when tracing is off (sinks then skip
// their client instrumentation entirely).
func (w *Worker) tracer() trace.TracerProvider {
	if w.tel == nil || !w.tel.Tracing() {
		return nil
	}
	return w.tel.Tracer
}

func (w *Worker) meter() metric.MeterProvider {
	if w.tel == nil {
		return nil
	}
	return w.tel.Meter
}

// registerGauges exports the outbox's and the sinks' state, read from
// JetStream at each scrape.
func (w *Worker) registerGauges(dlq *outbox.DeadLetters) error {
	mp := w.meter()
	if mp == nil {
		return nil
	}
	m := mp.Meter("github.com/courierhq/courier/worker")
	events, err := m.Int64ObservableGauge("courier.outbox.events", metric.WithDescription("Events in the outbox (not yet confirmed by every sink)."), metric.WithUnit("{event}"))
	if err != nil {
		return fmt.Errorf("metric courier.outbox.events: %w", err)
	}
	bytes, err := m.Int64ObservableGauge("courier.outbox.size", metric.WithDescription("Bytes of the events in the outbox."), metric.WithUnit("By"))
	if err != nil {
		return fmt.Errorf("metric courier.outbox.size: %w", err)
	}
	stored, err := m.Int64ObservableCounter("courier.outbox.stored", metric.WithDescription("Events ever stored in the outbox (its last sequence)."), metric.WithUnit("{event}"))
	if err != nil {
		return fmt.Errorf("metric courier.outbox.stored: %w", err)
	}
	oldest, err := m.Float64ObservableGauge("courier.outbox.oldest_event_age", metric.WithDescription("Age of the oldest event in the outbox."), metric.WithUnit("s"))
	if err != nil {
		return fmt.Errorf("metric courier.outbox.oldest_event_age: %w", err)
	}
	// The limit beside the age, so an alert can say "near outbox.max_age"
	// without repeating the setting.
	maxAge, err := m.Float64ObservableGauge("courier.outbox.max_age", metric.WithDescription("The outbox's max_age: events older than it are dropped, delivered or not."), metric.WithUnit("s"))
	if err != nil {
		return fmt.Errorf("metric courier.outbox.max_age: %w", err)
	}
	pending, err := m.Int64ObservableGauge("courier.consumer.pending", metric.WithDescription("Events a sink has yet to confirm (consumer lag), in flight or waiting for a retry included."), metric.WithUnit("{event}"))
	if err != nil {
		return fmt.Errorf("metric courier.consumer.pending: %w", err)
	}
	dead, err := m.Int64ObservableGauge("courier.dead_letters", metric.WithDescription("Dead letters kept for a sink."), metric.WithUnit("{event}"))
	if err != nil {
		return fmt.Errorf("metric courier.dead_letters: %w", err)
	}
	disabled, err := m.Int64ObservableGauge("courier.sink.disabled", metric.WithDescription("1 while a sink is disabled (410 Gone, or by an operator)."))
	if err != nil {
		return fmt.Errorf("metric courier.sink.disabled: %w", err)
	}
	circuit, err := m.Int64ObservableGauge("courier.sink.circuit_open", metric.WithDescription("1 while a sink's circuit breaker is open (endpoint failing, probing)."))
	if err != nil {
		return fmt.Errorf("metric courier.sink.circuit_open: %w", err)
	}
	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if s, err := w.js.Stream(ctx, outbox.StreamEvents); err == nil {
			st := s.CachedInfo().State
			o.ObserveInt64(events, int64(st.Msgs))
			o.ObserveInt64(bytes, int64(st.Bytes))
			o.ObserveInt64(stored, int64(st.LastSeq))
			o.ObserveFloat64(maxAge, s.CachedInfo().Config.MaxAge.Seconds())
			if st.Msgs > 0 {
				o.ObserveFloat64(oldest, time.Since(st.FirstTime).Seconds())
			} else {
				o.ObserveFloat64(oldest, 0)
			}
		}
		for name, l := range w.loops() {
			sink := metric.WithAttributes(attribute.String("sink", name))
			o.ObserveInt64(disabled, boolInt(l.Stats().Disabled.Load()), sink)
			o.ObserveInt64(circuit, boolInt(l.Stats().CircuitOpen.Load()), sink)
			if c, err := w.js.Consumer(ctx, outbox.StreamEvents, outbox.ConsumerName(name)); err == nil {
				waiting, inFlight := status.Backlog(c.CachedInfo())
				o.ObserveInt64(pending, int64(waiting)+int64(inFlight), sink)
			}
			if n, err := dlq.Count(ctx, name); err == nil {
				o.ObserveInt64(dead, int64(n), sink)
			}
		}
		return nil
	}, events, bytes, stored, oldest, maxAge, pending, dead, disabled, circuit)
	if err != nil {
		return fmt.Errorf("register outbox metrics: %w", err)
	}
	return nil
}

// serveStatus answers GET /v1/status: what worker status --json prints.
func (w *Worker) serveStatus(rw http.ResponseWriter, r *http.Request) {
	rw.Header().Set("Content-Type", "application/json")
	recs, err := w.reg.Records(r.Context())
	var report status.Report
	if err == nil {
		names := make([]string, len(recs))
		for i, rec := range recs {
			names[i] = rec.Name
		}
		report, err = status.Read(r.Context(), w.js, names)
	}
	if err != nil {
		rw.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(rw).Encode(map[string]string{"error": err.Error()})
		return
	}
	_ = json.NewEncoder(rw).Encode(report)
}

// AdminHandler serves /metrics, /healthz (the process answers), /readyz
// (the outbox is reachable and every sink's consumer is bound) and, with a
// token, the admin API under /v1/ and the web console at /.
func (w *Worker) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	if w.tel != nil {
		mux.Handle("GET /metrics", w.tel.MetricsHandler())
	}
	// The token was read at start (worker.Start fails without it).
	if w.reg != nil {
		mux.Handle("/v1/", w.reg.Handler(w.apiToken))
		mux.Handle("GET /v1/status", bearer.Require(w.apiToken, registry.AdminOff, http.HandlerFunc(w.serveStatus)))
	}
	events := eventlog.Handler(w.EventLogDo, w.authenticate)
	mux.Handle("/v1/events", events)
	mux.Handle("/v1/events/", events)
	mux.Handle("/", w.consoleHandler())
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(rw, "ok")
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) {
		if !w.ready.Load() || w.nc == nil || w.nc.Status() != nats.CONNECTED {
			http.Error(rw, "not ready: outbox not reachable or consumers not bound", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(rw, "ready")
	})
	return w.throttle.Wrap(mux)
}

// authenticate admits the admin token to every event and an account token
// to its account's events.
func (w *Worker) authenticate(r *http.Request) (eventlog.Caller, int, string, bool) {
	if !w.adminOn() {
		return eventlog.Caller{}, http.StatusForbidden, adminOff, false
	}
	got, _ := bearer.FromRequest(r)
	account, ok := w.callerOf(got)
	if !ok {
		return eventlog.Caller{}, http.StatusUnauthorized, "missing or wrong bearer token", false
	}
	return eventlog.Caller{Account: account}, 0, "", true
}

const adminOff = "the admin API is off: set admin.token or admin.token_file (or admin.account_tokens) in the worker's configuration"

func (w *Worker) adminOn() bool { return w.apiToken != "" || len(w.accounts) > 0 }

// callerOf tells whose token this is: the admin's (account "") or an
// account's. Tokens are compared in constant time, each one.
func (w *Worker) callerOf(token string) (account string, ok bool) {
	if token == "" {
		return "", false
	}
	if bearer.Equal(token, w.apiToken) {
		return "", true
	}
	for t, name := range w.accounts {
		if bearer.Equal(token, t) {
			account, ok = name, true
		}
	}
	return account, ok
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

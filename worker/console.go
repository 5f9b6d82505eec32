package worker

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/console"
	"github.com/courierhq/courier/eventlog"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/registry"
	"github.com/courierhq/courier/status"
)

// rateWindow is the span of the console's delivery and failure rates.
const rateWindow = 5 * time.Minute

// consoleHandler is the web console at the admin listener's root, or, with
// the admin API off, a page that says how to turn it on.
func (w *Worker) consoleHandler() http.Handler {
	if !w.adminOn() {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			http.Error(rw, "the console is off: "+adminOff, http.StatusForbidden)
		})
	}
	c, err := console.New(consoleBackend{w}, console.Options{
		Secure: w.cfg.Admin.TLS.On(), TraceURL: w.cfg.Admin.TraceURL, Version: w.version, Log: w.log,
	})
	if err != nil { // the templates are embedded: a broken one fails the tests
		w.log.Error("console", "err", err)
		return http.NotFoundHandler()
	}
	return c
}

// consoleBackend answers the console from the cluster's state: the
// heartbeats, the sink registry and states, the outbox's consumers, the
// dead letters and this node's event log.
type consoleBackend struct{ w *Worker }

func (b consoleBackend) Authenticate(token string) (console.Caller, bool) {
	account, ok := b.w.callerOf(token)
	return console.Caller{Account: account}, ok
}

func (b consoleBackend) Overview(ctx context.Context) (console.Overview, error) {
	w := b.w
	ov := console.Overview{RateWindow: rateWindow}
	nodes, err := w.nodes.List(ctx)
	if err != nil {
		return ov, fmt.Errorf("read the nodes' heartbeats: %w", err)
	}
	now := time.Now()
	for _, n := range status.Nodes(nodes, now) {
		ov.Nodes = append(ov.Nodes, console.Node{Name: n.Node, Up: n.Up, Stopped: n.Stopped,
			LastSeen: now.Sub(n.Heartbeat), Version: n.Version, EventLogLag: n.EventLogLag})
	}
	ov.Sinks, err = b.sinks(ctx, nodes)
	if err != nil {
		return ov, err
	}
	if w.elog != nil {
		outcomes, err := w.elog.store.Outcomes(ctx, now.Add(-rateWindow))
		if err == nil {
			ov.RatesKnown = true
			for i := range ov.Sinks {
				o := outcomes[ov.Sinks[i].Name]
				ov.Sinks[i].Delivered = o[eventlog.Delivered]
				ov.Sinks[i].Failed = o["retried"] + o[eventlog.DeadLettered]
			}
		}
	}
	if s, err := w.js.Stream(ctx, outbox.StreamEvents); err == nil {
		st := s.CachedInfo().State
		ov.Outbox = console.OutboxState{Events: st.Msgs, Bytes: st.Bytes}
		if st.Msgs > 0 {
			ov.Outbox.OldestAge = now.Sub(st.FirstTime)
		}
	}
	return ov, nil
}

// sinks joins each defined sink's view with its status.
func (b consoleBackend) sinks(ctx context.Context, nodes []outbox.NodeInfo) ([]console.Sink, error) {
	views, err := b.w.reg.Views(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the sinks: %w", err)
	}
	names := make([]string, len(views))
	for i, v := range views {
		names[i] = v.Name
	}
	statuses, err := status.Sinks(ctx, b.w.js, names, nodes)
	if err != nil {
		return nil, fmt.Errorf("read the sinks' state: %w", err)
	}
	out := make([]console.Sink, len(views))
	for i, v := range views {
		st := statuses[i]
		out[i] = console.Sink{Name: v.Name, Kind: v.Type, Target: v.Target, State: st.State, Pending: st.Pending,
			InFlight: st.InFlight, DeadLetters: st.DeadLetters, LastError: st.LastError, Problem: v.Problem}
	}
	return out, nil
}

func (b consoleBackend) Sink(ctx context.Context, name string) (console.SinkPage, error) {
	w := b.w
	recs, err := w.reg.Records(ctx)
	if err != nil {
		return console.SinkPage{}, fmt.Errorf("read the sinks: %w", err)
	}
	i := slices.IndexFunc(recs, func(r registry.Record) bool { return r.Name == name })
	if i < 0 {
		return console.SinkPage{}, fmt.Errorf("no sink named %q: %w", name, console.ErrNotFound)
	}
	nodes, err := w.nodes.List(ctx)
	if err != nil {
		return console.SinkPage{}, fmt.Errorf("read the nodes' heartbeats: %w", err)
	}
	all, err := b.sinks(ctx, nodes)
	if err != nil {
		return console.SinkPage{}, err
	}
	p := console.SinkPage{Definition: config.RedactSource(recs[i].Definition), Origin: recs[i].Origin, Updated: recs[i].Updated.Format(time.RFC3339)}
	for _, s := range all {
		if s.Name == name {
			p.Sink = s
		}
	}
	if st, err := w.deps.states.Get(ctx, name); err == nil {
		p.Disabled = st.Disabled
	}
	if w.elog == nil {
		p.LogOff = true
		return p, nil
	}
	as, err := w.elog.store.SinkAttempts(ctx, name, 50)
	if err != nil {
		return p, err
	}
	for _, a := range as {
		p.Attempts = append(p.Attempts, a.Attempt)
	}
	return p, nil
}

func (b consoleBackend) TestSink(ctx context.Context, name string) (console.TestOutcome, error) {
	sinks, _, problems, err := b.w.reg.Sinks(ctx)
	if err != nil {
		return console.TestOutcome{}, fmt.Errorf("read the sinks: %w", err)
	}
	i := slices.IndexFunc(sinks, func(s config.Sink) bool { return s.Name == name })
	if i < 0 {
		if p := problems[name]; p != nil {
			return console.TestOutcome{}, fmt.Errorf("sink %s does not apply on node %s: %w", name, b.w.cfg.NodeID, p)
		}
		return console.TestOutcome{}, fmt.Errorf("no sink named %q: %w", name, console.ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(ctx, sinks[i].AttemptTimeout())
	defer cancel()
	res := SendTestEvent(ctx, sinks[i], b.w.cfg.NodeID, b.w.version, b.w.guard)
	out := console.TestOutcome{EventID: res.EventID, Took: res.Took}
	if res.Err != nil {
		out.Error, out.Kind = res.Err.Error(), res.Kind.String()
	}
	return out, nil
}

func (b consoleBackend) SetSinkDisabled(ctx context.Context, name string, disabled bool) error {
	recs, err := b.w.reg.Records(ctx)
	if err != nil {
		return fmt.Errorf("read the sinks: %w", err)
	}
	if !slices.ContainsFunc(recs, func(r registry.Record) bool { return r.Name == name }) {
		return fmt.Errorf("no sink named %q: %w", name, console.ErrNotFound)
	}
	reason := map[bool]string{true: "disabled by an operator (console)", false: "enabled by an operator (console)"}[disabled]
	return b.w.deps.states.Put(ctx, name, outbox.SinkState{Disabled: disabled, Reason: reason, At: time.Now().UTC(), Node: b.w.cfg.NodeID})
}

func (b consoleBackend) DeadLetters(ctx context.Context, sink string) ([]outbox.DeadLetter, error) {
	return b.w.deps.dlq.List(ctx, sink, 0)
}

func (b consoleBackend) Replay(ctx context.Context, sink string, ids []string) (int, error) {
	return b.w.deps.dlq.Replay(ctx, sink, ids)
}

func (b consoleBackend) EventLog(ctx context.Context, req eventlog.Request) eventlog.Response {
	return b.w.EventLogDo(ctx, req)
}

func (b consoleBackend) Settings(ctx context.Context) ([]console.Setting, error) {
	settings, _, err := b.w.reg.Settings(ctx)
	if err != nil {
		return nil, err
	}
	overrides, err := b.w.reg.Overrides(ctx)
	if err != nil {
		return nil, err
	}
	var out []console.Setting
	for _, st := range config.SettingNames() {
		v, _ := settings.Get(st.Name)
		_, set := overrides[st.Name]
		out = append(out, console.Setting{Name: st.Name, Description: st.Description, Value: v, Set: set})
	}
	return out, nil
}

func (b consoleBackend) SetSetting(ctx context.Context, name, value string) error {
	return b.w.reg.Set(ctx, name, value)
}

func (b consoleBackend) ResetSetting(ctx context.Context, name string) error {
	return b.w.reg.Reset(ctx, name)
}

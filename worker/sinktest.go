package worker

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/delivery"
	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/netguard"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/retry"
)

// SinkStatus is where one sink stands across the cluster, as worker status
// and the console show it.
type SinkStatus struct {
	Sink        string `json:"sink"`
	State       string `json:"state"` // enabled, disabled: <reason>, or circuit open on <nodes>
	Pending     uint64 `json:"pending"`
	InFlight    int    `json:"in_flight"`
	DeadLetters uint64 `json:"dead_letters"`
	LastError   string `json:"last_error,omitempty"`
}

// Sink states as SinkStatus.State begins.
const (
	StateEnabled     = "enabled"
	StateDisabled    = "disabled"
	StateCircuitOpen = "circuit open"
)

// SinkStatuses reads each named sink's state, backlog and dead letters from
// the outbox, and its last error and circuit from the nodes' heartbeats
// (the nodes that are up).
func SinkStatuses(ctx context.Context, js jetstream.JetStream, names []string, nodes []outbox.NodeInfo) ([]SinkStatus, error) {
	states, err := outbox.OpenSinkStates(ctx, js)
	if err != nil {
		return nil, err
	}
	dlq := outbox.NewDeadLetters(js)
	now := time.Now()
	out := make([]SinkStatus, 0, len(names))
	for _, name := range names {
		row := SinkStatus{Sink: name, State: StateEnabled}
		var open []string
		for _, n := range nodes {
			if e := n.LastError[name]; e > row.LastError { // RFC 3339 prefix: latest wins
				row.LastError = e
			}
			if n.Up(now, 3*HeartbeatInterval) && slices.Contains(n.CircuitOpen, name) {
				open = append(open, n.Node)
			}
		}
		if len(open) > 0 {
			row.State = StateCircuitOpen + " on " + strings.Join(open, ", ")
		}
		if st, err := states.Get(ctx, name); err == nil && st.Disabled {
			row.State = StateDisabled + ": " + st.Reason
		}
		if c, err := js.Consumer(ctx, outbox.StreamEvents, delivery.ConsumerName(name)); err == nil {
			row.Pending, row.InFlight = c.CachedInfo().NumPending, c.CachedInfo().NumAckPending
		}
		row.DeadLetters, _ = dlq.Count(ctx, name)
		out = append(out, row)
	}
	return out, nil
}

// TestResult is the outcome of one test event sent to a sink.
type TestResult struct {
	EventID string
	Took    time.Duration
	Kind    retry.Kind // when Err is set: how the failure classifies
	Err     error
}

// SendTestEvent builds the sink and sends it one COURIER_TEST event, as
// gluster-eventsapi webhook-test does; nothing goes through the outbox.
func SendTestEvent(ctx context.Context, sc config.Sink, node, version string, guard *netguard.Guard) TestResult {
	sink, err := BuildSink(sc, version, nil, guard)
	if err != nil {
		return TestResult{Err: err, Kind: retry.Permanent}
	}
	defer sink.Close(ctx)
	ev := event.Envelope{Type: "COURIER_TEST", Source: "courier-worker", Data: json.RawMessage(`{"message":"test event from Courier"}`)}
	if err := ev.Complete(node); err != nil {
		return TestResult{Err: err, Kind: retry.Permanent}
	}
	start := time.Now()
	err = sink.Send(ctx, &ev)
	res := TestResult{EventID: ev.ID, Took: time.Since(start).Round(time.Millisecond), Err: err}
	if err != nil {
		res.Kind = retry.Classify(err).Kind
	}
	return res
}

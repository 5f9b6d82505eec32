// Package status says where a Courier cluster stands, read from its
// outbox: each node (up, stopped, or silent, from its heartbeat) and each
// sink (state, backlog, dead letters, last error). It is computed here
// only: `worker status` prints it, the admin API serves it at
// GET /v1/status, and the console shows it.
package status

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/outbox"
)

// HeartbeatInterval is how often a node reports itself. A node is up while
// its last report is at most three intervals old.
const HeartbeatInterval = 5 * time.Second

// upWithin is how old a heartbeat may be for its node to count as up.
const upWithin = 3 * HeartbeatInterval

// Report is the whole picture.
type Report struct {
	Nodes []Node `json:"nodes"`
	Sinks []Sink `json:"sinks"`
}

// Node is one node's last report and what it says now.
type Node struct {
	outbox.NodeInfo
	Up bool `json:"up"`
}

// Worker says what the node's worker is doing: running, stopped (cleanly)
// or not reporting (its heartbeats stopped without a goodbye).
func (n Node) Worker() string {
	switch {
	case n.Up:
		return "running"
	case n.Stopped:
		return "stopped"
	}
	return "not reporting"
}

// Sink is where one sink stands across the cluster.
type Sink struct {
	Sink        string `json:"sink"`
	State       string `json:"state"` // enabled, disabled: <reason>, or circuit open on <nodes>
	Pending     uint64 `json:"pending"`
	InFlight    int    `json:"in_flight"`
	DeadLetters uint64 `json:"dead_letters"`
	LastError   string `json:"last_error,omitempty"`
}

// Sink states as Sink.State begins.
const (
	StateEnabled     = "enabled"
	StateDisabled    = "disabled"
	StateCircuitOpen = "circuit open"
)

// Read reads every node and the named sinks.
func Read(ctx context.Context, js jetstream.JetStream, sinks []string) (Report, error) {
	bucket, err := outbox.OpenNodes(ctx, js)
	if err != nil {
		return Report{}, fmt.Errorf("open the nodes' heartbeats: %w", err)
	}
	infos, err := bucket.List(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("read the nodes' heartbeats: %w", err)
	}
	r := Report{Nodes: Nodes(infos, time.Now())}
	if r.Sinks, err = Sinks(ctx, js, sinks, infos); err != nil {
		return Report{}, err
	}
	return r, nil
}

// Nodes says which of the reporting nodes are up at now.
func Nodes(infos []outbox.NodeInfo, now time.Time) []Node {
	out := make([]Node, len(infos))
	for i, n := range infos {
		out[i] = Node{NodeInfo: n, Up: n.Up(now, upWithin)}
	}
	return out
}

// Sinks reads each named sink's state, backlog and dead letters from the
// outbox, and its last error and circuit from the nodes' heartbeats (the
// nodes that are up).
func Sinks(ctx context.Context, js jetstream.JetStream, names []string, nodes []outbox.NodeInfo) ([]Sink, error) {
	states, err := outbox.OpenSinkStates(ctx, js)
	if err != nil {
		return nil, fmt.Errorf("read the sinks' states: %w", err)
	}
	dlq := outbox.NewDeadLetters(js)
	now := time.Now()
	out := make([]Sink, 0, len(names))
	for _, name := range names {
		row := Sink{Sink: name, State: StateEnabled}
		var open []string
		for _, n := range nodes {
			if e := n.LastError[name]; e > row.LastError { // RFC 3339 prefix: latest wins
				row.LastError = e
			}
			if n.Up(now, upWithin) && slices.Contains(n.CircuitOpen, name) {
				open = append(open, n.Node)
			}
		}
		if len(open) > 0 {
			row.State = StateCircuitOpen + " on " + strings.Join(open, ", ")
		}
		if st, err := states.Get(ctx, name); err == nil && st.Disabled {
			row.State = StateDisabled + ": " + st.Reason
		}
		if c, err := js.Consumer(ctx, outbox.StreamEvents, outbox.ConsumerName(name)); err == nil {
			row.Pending, row.InFlight = Backlog(c.CachedInfo())
		}
		row.DeadLetters, _ = dlq.Count(ctx, name)
		out = append(out, row)
	}
	return out, nil
}

// Backlog is what a sink's consumer still owes: events not yet handed to
// the sink (pending) and handed but not yet acknowledged (in flight).
// Together they are the sink's backlog, as the metrics count it. Since a
// consumer reads the whole outbox, pending also counts other sinks'
// retries and replays stored after the sink's position, which it skips
// when it reaches them.
func Backlog(info *jetstream.ConsumerInfo) (pending uint64, inFlight int) {
	return info.NumPending, info.NumAckPending
}

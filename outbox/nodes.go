package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketNodes holds each node's last heartbeat, replicated with the outbox,
// so any node can tell which others are up.
const BucketNodes = "COURIER_NODES"

// NodeInfo is what a node reports about itself.
type NodeInfo struct {
	Node      string            `json:"node"`
	URL       string            `json:"url,omitempty"`
	Version   string            `json:"version,omitempty"`
	Started   time.Time         `json:"started"`
	Heartbeat time.Time         `json:"heartbeat"`
	Stopped   bool              `json:"stopped,omitempty"` // stopped cleanly
	Sinks     []string          `json:"sinks,omitempty"`
	LastError map[string]string `json:"last_error,omitempty"` // by sink
	// Problems are the defined sinks the node does not run, and why (a
	// definition that does not apply there, a sink that failed to start).
	Problems map[string]string `json:"problems,omitempty"`
	// CircuitOpen names the sinks whose circuit breaker is open on the node.
	CircuitOpen []string `json:"circuit_open,omitempty"`
	// EventLogLag is how many outbox events the node's event log has yet
	// to log; nil when the node keeps no log.
	EventLogLag *int64 `json:"event_log_lag,omitempty"`
	// Settings are the values of the settings (worker config) the node
	// applies, and SettingsApplied the fingerprint of the overrides they
	// came from (registry.Fingerprint).
	Settings        map[string]string `json:"settings,omitempty"`
	SettingsApplied string            `json:"settings_applied,omitempty"`
}

// Up reports whether the node's last heartbeat is recent enough.
func (n NodeInfo) Up(now time.Time, within time.Duration) bool {
	return !n.Stopped && now.Sub(n.Heartbeat) <= within
}

// Nodes reads and writes node heartbeats.
type Nodes struct{ kv jetstream.KeyValue }

// EnsureNodes creates or opens the nodes bucket.
func EnsureNodes(ctx context.Context, js jetstream.JetStream, replicas int) (*Nodes, error) {
	kv, err := ensureBucket(ctx, js, BucketNodes, "Courier nodes and their heartbeats", replicas)
	return &Nodes{kv: kv}, err
}

// OpenNodes opens the bucket (for operator commands).
func OpenNodes(ctx context.Context, js jetstream.JetStream) (*Nodes, error) {
	kv, err := openBucket(ctx, js, BucketNodes)
	return &Nodes{kv: kv}, err
}

// Beat stores the node's report.
func (n *Nodes) Beat(ctx context.Context, info NodeInfo) error {
	b, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("encode node %s: %w", info.Node, err)
	}
	if _, err := n.kv.Put(ctx, info.Node, b); err != nil {
		return fmt.Errorf("heartbeat of node %s: %w", info.Node, err)
	}
	return nil
}

// List returns every node that ever reported, read as one snapshot from
// the bucket's stream (not key by key: a direct get may be answered by a
// replica that is still catching up and lacks a key).
func (n *Nodes) List(ctx context.Context) ([]NodeInfo, error) {
	all, err := (&Bucket{kv: n.kv}).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	out := make([]NodeInfo, 0, len(all))
	for _, key := range slices.Sorted(maps.Keys(all)) {
		var info NodeInfo
		if err := json.Unmarshal(all[key], &info); err != nil {
			return out, fmt.Errorf("decode node %s: %w", key, err)
		}
		out = append(out, info)
	}
	return out, nil
}

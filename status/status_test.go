package status_test

import (
	"testing"
	"time"

	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/status"
)

// A node is up while its last heartbeat is at most three intervals old and
// it did not say goodbye; otherwise its worker is stopped or silent.
func TestNodesUpStoppedOrSilent(t *testing.T) {
	now := time.Now()
	got := status.Nodes([]outbox.NodeInfo{
		{Node: "fresh", Heartbeat: now.Add(-status.HeartbeatInterval)},
		{Node: "late", Heartbeat: now.Add(-3*status.HeartbeatInterval - time.Second)},
		{Node: "gone", Heartbeat: now, Stopped: true},
	}, now)
	want := map[string]struct {
		up     bool
		worker string
	}{"fresh": {true, "running"}, "late": {false, "not reporting"}, "gone": {false, "stopped"}}
	for _, n := range got {
		if w := want[n.Node]; n.Up != w.up || n.Worker() != w.worker {
			t.Errorf("%s: up %v, worker %q; want up %v, worker %q", n.Node, n.Up, n.Worker(), w.up, w.worker)
		}
	}
}

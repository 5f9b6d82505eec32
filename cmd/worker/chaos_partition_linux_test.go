package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/spool"
)

// netLab is a network the test makes of its own: a namespace holding a
// bridge, one namespace per node joined to it by a veth pair, and a veth
// from the test's own namespace (where the receiver and the producer run)
// to the bridge. Cutting a node unplugs its veth from the bridge side.
// Everything is deleted at the end; nothing leaves the namespaces.
type netLab struct {
	t      *testing.T
	prefix string
	hub    string
	nodes  []string // namespace per node
	addrs  []string // address per node
	host   string   // the test's address on the bridge
}

const labNet = "10.213.77"

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newNetLab(t *testing.T, n int) *netLab {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		testutil.Require(t, fmt.Errorf("the partition scenario needs iproute2: %w", err))
	}
	if os.Geteuid() != 0 {
		testutil.Require(t, errors.New("the partition scenario makes network namespaces and needs root"))
	}
	l := &netLab{t: t, prefix: fmt.Sprintf("cr%d", os.Getpid()%100000), host: labNet + ".100"}
	l.hub = l.prefix + "hub"
	t.Cleanup(l.remove)
	ipCmd(t, "netns", "add", l.hub)
	ipCmd(t, "-n", l.hub, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", l.hub, "link", "set", "br0", "up")
	// The test's own leg.
	hostIf, hubIf := l.prefix+"h", l.prefix+"hh"
	ipCmd(t, "link", "add", hostIf, "type", "veth", "peer", "name", hubIf, "netns", l.hub)
	ipCmd(t, "addr", "add", l.host+"/24", "dev", hostIf)
	ipCmd(t, "link", "set", hostIf, "up")
	ipCmd(t, "-n", l.hub, "link", "set", hubIf, "master", "br0", "up")
	for i := range n {
		ns := fmt.Sprintf("%sn%d", l.prefix, i+1)
		addr := fmt.Sprintf("%s.%d", labNet, 11+i)
		ipCmd(t, "netns", "add", ns)
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
		ipCmd(t, "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", l.port(i), "netns", l.hub)
		ipCmd(t, "-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
		ipCmd(t, "-n", l.hub, "link", "set", l.port(i), "master", "br0", "up")
		l.nodes, l.addrs = append(l.nodes, ns), append(l.addrs, addr)
	}
	return l
}

// port is node i's veth on the bridge.
func (l *netLab) port(i int) string { return fmt.Sprintf("%sp%d", l.prefix, i+1) }

// cut unplugs node i from the network; heal plugs it back.
func (l *netLab) cut(i int)  { ipCmd(l.t, "-n", l.hub, "link", "set", l.port(i), "down") }
func (l *netLab) heal(i int) { ipCmd(l.t, "-n", l.hub, "link", "set", l.port(i), "up") }

func (l *netLab) remove() {
	for _, ns := range append(l.nodes, l.hub) {
		_ = exec.Command("ip", "netns", "del", ns).Run() // also deletes its veths
	}
}

// labNode is one worker process inside its namespace.
type labNode struct {
	id, cfg, url string
	spool        string // the node's spool, which its worker flushes
	cmd          *exec.Cmd
	log          *bytes.Buffer
}

func (l *netLab) start(t *testing.T, n *labNode, ns string) {
	t.Helper()
	n.log = &bytes.Buffer{}
	n.cmd = exec.Command("ip", "netns", "exec", ns, os.Args[0], "run", "--config", n.cfg)
	n.cmd.Env = append(os.Environ(), "COURIER_TEST_BE_WORKER=1")
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", n.id, err)
	}
}

// inContact reports whether the outbox stream has a leader in recent
// contact with both followers, each nearly caught up. Under load a
// follower's lag is rarely 0 at the moment the leader is asked, so
// JetStream's "current" flag (lag 0) flickers and cannot say it.
func inContact(nodes []*labNode) bool {
	for _, n := range nodes {
		nc, err := nats.Connect(n.url, nats.Timeout(time.Second))
		if err != nil {
			continue
		}
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := js.Stream(ctx, outbox.StreamEvents)
		cancel()
		nc.Close()
		if err != nil || s.CachedInfo().Cluster == nil || s.CachedInfo().Cluster.Leader == "" {
			continue
		}
		ci := s.CachedInfo().Cluster
		ok := len(ci.Replicas) == len(nodes)-1
		for _, r := range ci.Replicas {
			ok = ok && !r.Offline && r.Active < 5*time.Second && r.Lag < 1000
		}
		return ok
	}
	return false
}

// TestChaosPartitions: three nodes, each in its own network namespace, under
// a steady load. The outbox stream's leader is cut off from the others,
// then a follower, then every node at once, each healed after a while; then
// two nodes are SIGKILLed in a row and restarted. A producer on each node
// emits to it, and spools what it does not acknowledge. After healing, nothing is lost, no command was run
// to resync, and every node's worker status says all three are UP. make
// chaos cuts for 30 s (COURIER_CHAOS_CUT); make test 8 s.
func TestChaosPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos scenario skipped with -short")
	}
	cutFor := chaosDuration(t, "COURIER_CHAOS_CUT", 8*time.Second)
	lab := newNetLab(t, 3)

	var (
		mu   sync.Mutex
		seen = map[string]int{}
	)
	ln, err := net.Listen("tcp", lab.host+":0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("webhook-id") // the event id (Standard Webhooks)
		mu.Lock()
		seen[id]++
		mu.Unlock()
	}))
	rcv.Listener = ln
	rcv.Start()
	defer rcv.Close()

	routes := make([]string, 3)
	for i, a := range lab.addrs {
		routes[i] = a + ":6222"
	}
	nodes := make([]*labNode, 3)
	for i := range nodes {
		dir := t.TempDir()
		n := &labNode{id: fmt.Sprintf("n%d", i+1), url: "nats://" + lab.addrs[i] + ":4222", cfg: filepath.Join(dir, "courier.yaml"),
			spool: filepath.Join(dir, "data", "spool")}
		cfg := fmt.Sprintf(`node_id: %s
data_dir: %s
log: {level: info, format: json}
admin: {listen: "off"}
shutdown_timeout: 5s
outbox:
  listen: "%s:4222"
  insecure: true   # inside the test's own namespaces
cluster:
  name: courier-lab
  listen: %s
  routes: [%s]
webhook_allow: [%s.0/24]
sinks:
  - name: audit
    type: webhook
    url: %s/listen
    timeout: 2s
    retry: {initial: 50ms, max_interval: 500ms}
`, n.id, filepath.Join(dir, "data"), lab.addrs[i], routes[i], strings.Join(routes, ", "), labNet, rcv.URL)
		if err := os.WriteFile(n.cfg, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		lab.start(t, n, lab.nodes[i])
		nodes[i] = n
	}
	defer func() {
		for _, n := range nodes {
			_ = n.cmd.Process.Kill()
			_ = n.cmd.Wait()
			if t.Failed() {
				t.Logf("%s log:\n%s", n.id, n.log.String())
			}
		}
	}()
	leaderOf := func() (string, int) {
		for _, n := range nodes {
			if l, cur := streamLeader(t, n.url); l != "" {
				return l, cur
			}
		}
		return "", 0
	}
	testutil.Eventually(t, 2*time.Minute, func() bool { l, cur := leaderOf(); return l != "" && cur == 3 }, "the three nodes form one cluster")

	// Steady load: a producer on each node (as an application beside its
	// worker would be) emits 20 events a second to that node's outbox, and
	// puts in the node's spool what the outbox does not acknowledge in 2 s
	// (the emit contract: the worker sends the spool on, with the same
	// ids, once its outbox takes events again). After a failure it spools
	// without trying for 2 s, so a cut node does not slow its producer.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		acked          []string // acknowledged by the outbox or fsynced in a spool
		ackedMu        sync.Mutex
		emits, spooled int
		producers      sync.WaitGroup
	)
	loadStart := time.Now()
	for k, n := range nodes {
		producers.Add(1)
		go func() {
			defer producers.Done()
			sp, err := spool.Open(n.spool)
			if err != nil {
				t.Errorf("open %s's spool: %v", n.id, err)
				return
			}
			var pub *outbox.Publisher
			defer func() {
				if pub != nil {
					pub.Close()
				}
			}()
			var spoolUntil time.Time
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ctx.Err() == nil; i++ {
				e := event.Envelope{ID: fmt.Sprintf("part-%d-%05d", k+1, i), Type: "VOLUME_CREATE"}
				if err := e.Complete(n.id); err != nil { // as emit does: the spool stores complete events
					t.Errorf("complete %s: %v", e.ID, err)
					return
				}
				sent := false
				if time.Now().After(spoolUntil) {
					if pub == nil {
						if p, err := outbox.Dial(ctx, n.url, 500*time.Millisecond, outbox.WithAckTimeout(2*time.Second)); err == nil {
							pub = p
						}
					}
					if pub != nil {
						if _, err := pub.Emit(ctx, e); err == nil {
							sent = true
						} else {
							pub.Close()
							pub = nil
						}
					}
					if !sent {
						spoolUntil = time.Now().Add(2 * time.Second)
					}
				}
				if !sent {
					if err := sp.Put(e); err != nil {
						t.Errorf("spool %s on %s: %v", e.ID, n.id, err)
						return
					}
				}
				ackedMu.Lock()
				acked = append(acked, e.ID)
				if sent {
					emits++
				} else {
					spooled++
				}
				ackedMu.Unlock()
				select {
				case <-ctx.Done():
				case <-tick.C: // the load's pace: 20 events/s per node
				}
			}
		}()
	}
	loadDone := make(chan struct{})
	go func() { producers.Wait(); close(loadDone) }()
	index := func(id string) int { return int(id[1] - '1') }
	pause := func() { time.Sleep(2 * time.Second) } // load between faults

	pause()
	var leader string
	testutil.Eventually(t, time.Minute, func() bool { leader, _ = leaderOf(); return leader != "" }, "the stream's leader")
	li := index(leader)
	lab.cut(li)
	time.Sleep(cutFor) // the partition lasts this long
	lab.heal(li)
	pause()
	var newLeader string
	testutil.Eventually(t, time.Minute, func() bool { newLeader, _ = leaderOf(); return newLeader != "" }, "a stream leader after healing %s", leader)
	fi := (index(newLeader) + 1) % 3 // a follower
	lab.cut(fi)
	time.Sleep(cutFor / 2)
	lab.heal(fi)
	pause()
	for i := range nodes {
		lab.cut(i)
	}
	time.Sleep(cutFor / 2)
	for i := range nodes {
		lab.heal(i)
	}
	testutil.Eventually(t, 2*time.Minute, func() bool { return inContact(nodes) }, "the cluster whole again after the partitions")
	for _, k := range []int{0, 1} {
		if err := nodes[k].cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = nodes[k].cmd.Wait()
		lab.start(t, nodes[k], lab.nodes[k])
		testutil.Eventually(t, 2*time.Minute, func() bool { return inContact(nodes) }, "%s back in the cluster after its SIGKILL", nodes[k].id)
	}
	pause()
	cancel()
	<-loadDone

	ackedMu.Lock()
	ids := append([]string(nil), acked...)
	ackedMu.Unlock()
	lost := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, id := range ids {
			if seen[id] == 0 {
				out = append(out, id)
			}
		}
		return out
	}
	testutil.Eventually(t, 3*time.Minute, func() bool { return len(lost()) == 0 }, "every acknowledged or spooled event delivered after healing (missing %d)", len(lost()))
	for _, n := range nodes {
		sp, err := spool.Open(n.spool)
		if err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, time.Minute, func() bool { l, err := sp.Len(); return err == nil && l == 0 }, "%s's worker emptied its spool", n.id)
	}
	dups := 0
	mu.Lock()
	for _, id := range ids {
		dups += max(seen[id]-1, 0)
	}
	mu.Unlock()
	for _, n := range nodes {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			r := cli(t, "status", "--config", n.cfg)
			if r.err == nil && !strings.Contains(r.stdout, "DOWN") && strings.Count(r.stdout, "UP") >= 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("worker status through %s does not show every node UP after 2 min: %v\n%s%s", n.id, r.err, r.stdout, r.stderr)
			}
			time.Sleep(500 * time.Millisecond) // poll again
		}
	}
	ackedMu.Lock()
	direct, viaSpool := emits, spooled
	ackedMu.Unlock()
	t.Logf("chaos partitions: 3 nodes in their own network namespaces, a producer on each at 20 events/s, %.0f events/s taken on average; leader %s cut %s, follower n%d cut %s, all cut %s, then n1 and n2 SIGKILLed in a row; emitted %d (%d acknowledged by the outbox, %d spooled), delivered %d, lost %d, duplicates %d; no command run, every spool emptied by its worker, every node's status UP",
		float64(len(ids))/time.Since(loadStart).Seconds(), leader, cutFor, fi+1, cutFor/2, cutFor/2, len(ids), direct, viaSpool, len(ids)-len(lost()), len(lost()), dups)
}

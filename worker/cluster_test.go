package worker_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/registry"
	"github.com/courierhq/courier/sinks/builtin"
)

// startCluster starts three nodes whose embedded outboxes form one cluster,
// all at once: each waits for the others' quorum.
func startCluster(t *testing.T, sinks string) []*testutil.Node {
	t.Helper()
	return startClusterWith(t, "", "", sinks)
}

// startClusterWith starts three nodes; top is added to each file at the top
// level, and clusterExtra under cluster:.
func startClusterWith(t *testing.T, top, clusterExtra, sinks string) []*testutil.Node {
	t.Helper()
	routes := []string{testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)}
	cfgs := make([]*config.File, 3)
	for i := range cfgs {
		y := fmt.Sprintf("node_id: n%d\nwebhook_allow: [127.0.0.1/32]\n%scluster:\n  name: test\n  listen: %s\n  routes: [%s]\n%ssinks:\n%s", i+1, top, routes[i], strings.Join(routes, ", "), clusterExtra, sinks)
		cfg, err := config.Parse([]byte(y), func(string) (string, bool) { return "", false }, builtin.Kinds())
		if err != nil {
			t.Fatalf("config: %v", err)
		}
		cfg.DataDir = t.TempDir()
		cfg.Outbox.Listen = "127.0.0.1:0"
		cfgs[i] = cfg
	}
	nodes := make([]*testutil.Node, 3)
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Go(func() { nodes[i] = testutil.StartConfig(t, cfg) })
	}
	wg.Wait()
	for _, n := range nodes {
		if n == nil {
			t.FailNow()
		}
	}
	return nodes
}

func TestClusterReplicatesOutboxAndSinksLive(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	rcv := testutil.NewReceiver(t)
	nodes := startCluster(t, sinkYAML("audit", rcv.URL(), ""))

	nc, err := nats.Connect(nodes[2].URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	s, err := js.Stream(ctx, "COURIER_OUTBOX")
	if err != nil {
		t.Fatal(err)
	}
	if r := s.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("outbox replicas = %d, want 3", r)
	}

	// Producers on every node; deliveries spread over the three workers.
	const perNode = 100
	for _, n := range nodes {
		p := n.Publisher(t)
		for i := range perNode {
			emit(t, p, event.Envelope{Type: "VOLUME_CREATE", Data: []byte(fmt.Sprintf(`{"i":%d}`, i))})
		}
	}
	testutil.Eventually(t, waitFor, func() bool { return rcv.Distinct() == 3*perNode }, "%d events delivered, got %d", 3*perNode, rcv.Distinct())

	// A sink added at run time through one node starts on every node.
	rcv2 := testutil.NewReceiver(t)
	reg, err := registry.Open(ctx, js, "operator", nodes[0].Config.BaseSettings(), nodes[0].Config.Env())
	if err != nil {
		t.Fatal(err)
	}
	def := fmt.Sprintf("name: added\ntype: webhook\nurl: %s\n", rcv2.URL())
	if _, err := reg.Put(ctx, []byte(def), registry.OriginAPI, false); err != nil {
		t.Fatalf("add sink: %v", err)
	}
	for _, n := range nodes {
		testutil.Eventually(t, waitFor, func() bool { return n.Loop("added") != nil }, "sink running on %s", n.Config.NodeID)
	}
	p := nodes[1].Publisher(t)
	for range 50 {
		emit(t, p, event.Envelope{Type: "VOLUME_DELETE"})
	}
	testutil.Eventually(t, waitFor, func() bool { return rcv2.Distinct() == 50 }, "new sink got %d of 50", rcv2.Distinct())

	// Deleting it stops it everywhere and removes its consumer.
	if _, err := reg.Delete(ctx, "added"); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		testutil.Eventually(t, waitFor, func() bool { return n.Loop("added") == nil }, "sink stopped on %s", n.Config.NodeID)
	}
	if _, err := js.Consumer(ctx, "COURIER_OUTBOX", "sink-added"); err == nil {
		t.Fatal("consumer of a deleted sink still exists")
	}

	// A setting changes the default concurrency on every node.
	if err := reg.Set(ctx, "concurrency", "3"); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		testutil.Eventually(t, waitFor, func() bool { l := n.Loop("audit"); return l != nil && n.SinkConfig("audit").Concurrency == 3 }, "concurrency applied on %s", n.Config.NodeID)
	}
	if err := reg.Set(ctx, "concurrency", "0"); err == nil {
		t.Fatal("concurrency 0 accepted")
	}
}

// TestClusterWithMutualTLSAndAuthDelivers: three nodes whose routes are
// mutual TLS with a route password, whose client ports are TLS with
// outbox.auth, form one cluster and deliver what a producer emits.
func TestClusterWithMutualTLSAndAuthDelivers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	files := testutil.NewTLSFiles(t)
	tlsYAML := fmt.Sprintf("{cert_file: %s, key_file: %s, ca_file: %s}", files.Cert, files.Key, files.CA)
	top := "outbox:\n  auth:\n    user: courier\n    password: worker-password-0123\n    producers: [{user: app, password: producer-password-0123}]\n  tls: " + tlsYAML + "\n"
	clusterExtra := "  auth: {user: route, password: route-password-0123}\n  tls: " + tlsYAML + "\n"
	rcv := testutil.NewReceiver(t)
	nodes := startClusterWith(t, top, clusterExtra, sinkYAML("audit", rcv.URL(), ""))
	creds := outbox.WithCredentials(outbox.Credentials{User: "app", Password: "producer-password-0123", CAFile: files.CA})
	var ids []string
	for i, n := range nodes {
		p := n.Publisher(t, creds)
		for j := range 10 {
			ids = append(ids, emit(t, p, event.Envelope{ID: fmt.Sprintf("tls-%d-%d", i, j), Type: "VOLUME_CREATE"}))
		}
	}
	testutil.Eventually(t, 60*time.Second, func() bool {
		for _, id := range ids {
			if rcv.Seen(id) == 0 {
				return false
			}
		}
		return true
	}, "every event emitted on any node delivered")
	if _, err := nats.Connect(nodes[0].URL(), nats.RootCAs(files.CA), nats.Timeout(5*time.Second), nats.MaxReconnects(0)); err == nil {
		t.Error("connected to a node's client port without credentials")
	}
}

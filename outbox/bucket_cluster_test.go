package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
)

// clusterNode is one of three embedded servers that can be stopped and
// started again on the same data directory.
type clusterNode struct {
	cfg outbox.ServerConfig
	srv *outbox.Server
}

func startBucketCluster(t *testing.T) []*clusterNode {
	t.Helper()
	listen := []string{testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)}
	routes := make([]string, len(listen))
	for i, l := range listen {
		routes[i] = "nats-route://" + l
	}
	nodes := make([]*clusterNode, len(listen))
	for i := range listen {
		nodes[i] = &clusterNode{cfg: outbox.ServerConfig{
			Name: fmt.Sprintf("n%d", i+1), Listen: "127.0.0.1:0", DataDir: t.TempDir(), SyncAlways: true,
			Cluster: outbox.ClusterConfig{Name: "test", Listen: listen[i], Routes: routes},
		}}
		nodes[i].start(t)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.stop()
		}
	})
	return nodes
}

func (n *clusterNode) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := outbox.StartServer(ctx, n.cfg, testutil.Logger(t))
	if err != nil {
		t.Fatalf("start %s: %v", n.cfg.Name, err)
	}
	n.srv = srv
}

func (n *clusterNode) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv = nil
	}
}

func (n *clusterNode) js(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(n.srv.ClientURL())
	if err != nil {
		t.Fatalf("connect to %s: %v", n.cfg.Name, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testutil.Require(t, err)
	return js
}

// retry runs f until it succeeds: right after a node joins or leaves, the
// cluster may still be electing leaders.
func retry(t *testing.T, what string, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond) // an early failure returns at once
	}
}

// A node that rejoins the cluster serves reads before its replica of a
// bucket has caught up. A snapshot read through it must still hold what
// the others stored while it was down: the sinks a node runs, and the ones
// `worker sinks list` shows, are read so.
func TestBucketAllThroughRejoinedNodeHoldsWhatWasStoredWhileItWasDown(t *testing.T) {
	nodes := startBucketCluster(t)
	js1 := nodes[0].js(t)
	var b *outbox.Bucket
	retry(t, "create the bucket", func(ctx context.Context) (err error) {
		b, err = outbox.EnsureBucket(ctx, js1, "TEST_REJOIN", "test", 3)
		return err
	})
	retry(t, "store the first key", func(ctx context.Context) error { return b.Put(ctx, "before", []byte("1")) })

	const rounds, keys = 5, 300
	for round := range rounds {
		nodes[2].stop()
		for k := range keys {
			key := fmt.Sprintf("r%d-k%d", round, k)
			retry(t, "store "+key, func(ctx context.Context) error { return b.Put(ctx, key, []byte("v")) })
		}
		nodes[2].start(t)
		js3 := nodes[2].js(t)
		var all map[string][]byte
		retry(t, "read through the rejoined node", func(ctx context.Context) (err error) {
			b3, err := outbox.OpenBucket(ctx, js3, "TEST_REJOIN")
			if err != nil {
				return err
			}
			all, err = b3.All(ctx)
			return err
		})
		if want := 1 + (round+1)*keys; len(all) != want {
			t.Fatalf("round %d: a read through the rejoined node saw %d keys, want %d", round, len(all), want)
		}
	}
}

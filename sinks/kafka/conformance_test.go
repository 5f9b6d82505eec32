package kafka_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/sinks"
	"github.com/courierhq/courier/sinks/kafka"
	"github.com/courierhq/courier/sinks/sinktest"
)

// kafkaPeer is a kfake broker that clients reach only through a TCP proxy,
// which can cut it off.
//
// A Kafka client dials the bootstrap address once, then the addresses the
// broker advertises in its metadata, so a proxy in front of the bootstrap
// address alone would be bypassed. kfake advertises its listener's Addr()
// and lets the test supply the listener (kfake.ListenFn): it gets one that
// accepts on a real loopback port but reports the proxy's address. Every
// connection, bootstrap or not, then runs through the proxy: Stop cuts them
// all and refuses new ones while kfake keeps running with what it stored,
// and Start listens again on the same address, which the clients still
// hold. (The alternative, closing kfake and starting a new cluster on the
// same port with kfake.Ports, would lose the stored messages and topics.)
type kafkaPeer struct {
	cluster *kfake.Cluster
	proxy   *testutil.Proxy

	// Received reads through the proxy too, so it keeps what it read and
	// goes on from there: while the peer is stopped it returns that.
	mu   sync.Mutex
	read []sinktest.Received
	next int64
}

const (
	conformanceTopic = "conformance"
	// maxMessageBytes is the peer's max.message.bytes (see
	// limitMessageBytes); Refusing sends an event past it.
	maxMessageBytes = 256 << 10
)

// advertisedListener accepts on one address and reports another.
type advertisedListener struct {
	net.Listener
	addr net.Addr
}

func (l advertisedListener) Addr() net.Addr { return l.addr }

func newKafkaPeer(t testing.TB) *kafkaPeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxy := testutil.NewProxy(t, ln.Addr().String())
	advertised, err := net.ResolveTCPAddr("tcp", proxy.Addr())
	if err != nil {
		t.Fatal(err)
	}
	handedOut := false
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, conformanceTopic),
		kfake.ListenFn(func(string, string) (net.Listener, error) {
			if handedOut {
				return nil, errors.New("the conformance peer has a single broker")
			}
			handedOut = true
			return advertisedListener{Listener: ln, addr: advertised}, nil
		}))
	if err != nil {
		ln.Close()
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(cluster.Close)
	limitMessageBytes(cluster, maxMessageBytes)
	if got := cluster.ListenAddrs()[0]; got != proxy.Addr() {
		t.Fatalf("kfake advertises %s, want the proxy %s", got, proxy.Addr())
	}
	return &kafkaPeer{cluster: cluster, proxy: proxy}
}

func (p *kafkaPeer) NewSink(t testing.TB) sinks.Sink {
	s, err := kafka.New(kafka.Config{Brokers: []string{p.proxy.Addr()}, Topic: conformanceTopic, Timeout: 5 * time.Second},
		event.FormatCourier, 16, "test")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (p *kafkaPeer) Received(t testing.TB) []sinktest.Received {
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msgs, err := readPartition(ctx, kafkago.DefaultDialer, p.proxy.Addr(), conformanceTopic, 0, p.next)
	if err != nil {
		t.Logf("reading the peer (keeping %d read before): %v", len(p.read), err)
	}
	for _, m := range msgs {
		var e event.Envelope
		if err := json.Unmarshal(m.Value, &e); err != nil {
			t.Errorf("body %s: %v", m.Value, err)
		}
		p.read = append(p.read, sinktest.Received{ID: e.ID, TransportID: headers(m)[kafka.HeaderEventID], TraceParent: headers(m)["traceparent"]})
		p.next = m.Offset + 1
	}
	return append([]sinktest.Received(nil), p.read...)
}

func (p *kafkaPeer) Stop(t testing.TB)  { p.proxy.Stop(t) }
func (p *kafkaPeer) Start(t testing.TB) { p.proxy.Start(t) }

// Refusing returns an event past the topic's max.message.bytes, which the
// broker refuses whatever the retries.
func (p *kafkaPeer) Refusing(t testing.TB) (sinks.Sink, *event.Envelope) {
	e := sinktest.NewEvent(fmt.Sprintf("refuse-%d", time.Now().UnixNano()))
	e.Data = json.RawMessage(`"` + strings.Repeat("x", maxMessageBytes+1) + `"`)
	return p.NewSink(t), e
}

func TestKafkaSinkConformance(t *testing.T) {
	sinktest.Run(t, newKafkaPeer(t))
}

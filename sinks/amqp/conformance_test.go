package amqp_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/sinks"
	amqpsink "github.com/courierhq/courier/sinks/amqp"
	"github.com/courierhq/courier/sinks/sinktest"
)

// amqpPeer is the real RabbitMQ behind a TCP proxy: the sinks dial the
// proxy, so Stop cuts them off while the broker keeps its queue.
type amqpPeer struct {
	admin    *amqp091.Channel // direct to the broker, for reading the queue
	proxy    *testutil.Proxy
	url      string // the broker's URL with the proxy's address
	exchange string
	queue    string

	mu  sync.Mutex
	got []sinktest.Received // reading the queue consumes it, so keep all
}

func newPeer(t *testing.T) *amqpPeer {
	admin := broker(t)
	u, err := url.Parse(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5672")
	}
	proxy := testutil.NewProxy(t, target)
	u.Host = proxy.Addr()
	exchange, queues := declareExchange(t, admin, "#")
	return &amqpPeer{admin: admin, proxy: proxy, url: u.String(), exchange: exchange, queue: queues[0]}
}

func (p *amqpPeer) sink(t testing.TB, exchange string) sinks.Sink {
	s, err := amqpsink.New(amqpsink.Config{URL: p.url, Exchange: exchange, Timeout: 5 * time.Second}, event.FormatCourier, 16, "test")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (p *amqpPeer) NewSink(t testing.TB) sinks.Sink { return p.sink(t, p.exchange) }

func (p *amqpPeer) Received(t testing.TB) []sinktest.Received {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		d, ok, err := p.admin.Get(p.queue, true)
		if err != nil {
			t.Fatalf("read %s: %v", p.queue, err)
		}
		if !ok {
			break
		}
		var e event.Envelope
		if err := json.Unmarshal(d.Body, &e); err != nil {
			t.Errorf("body %s: %v", d.Body, err)
			continue
		}
		p.got = append(p.got, sinktest.Received{ID: e.ID, TransportID: d.MessageId, TraceParent: fmt.Sprint(d.Headers["traceparent"])})
	}
	return append([]sinktest.Received(nil), p.got...)
}

func (p *amqpPeer) Stop(t testing.TB)  { p.proxy.Stop(t) }
func (p *amqpPeer) Start(t testing.TB) { p.proxy.Start(t) }

// Refusing publishes to an exchange no queue is bound to: with mandatory
// on, the broker returns the event.
func (p *amqpPeer) Refusing(t testing.TB) (sinks.Sink, *event.Envelope) {
	exchange, _ := declareExchange(t, p.admin)
	return p.sink(t, exchange), sinktest.NewEvent(fmt.Sprintf("refuse-%d", time.Now().UnixNano()))
}

func TestAMQPSinkConformance(t *testing.T) {
	sinktest.Run(t, newPeer(t))
}

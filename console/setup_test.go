package console_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/eventlog"
	"github.com/courierhq/courier/internal/httpserve"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
)

const (
	adminToken   = "console-admin-token-0123456789"
	acmeToken    = "console-acme-token-0123456789"
	hookSecret   = "hook-bearer-SECRET-4f1d2a"
	signingKey   = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LTEyMzQ1Njc4"
	traceURLBase = "http://jaeger.example/trace/"
)

// site is a worker with its console served over real HTTP, a receiver
// that refuses BAD events while refuse is set, and a producer.
type site struct {
	url    string
	node   *testutil.Node
	rcv    *testutil.Receiver
	refuse *atomic.Bool
	pub    *outbox.Publisher
	js     jetstream.JetStream
}

func startSite(t *testing.T) *site {
	t.Helper()
	s := &site{rcv: testutil.NewReceiver(t), refuse: &atomic.Bool{}}
	s.refuse.Store(true)
	s.rcv.Answer(func(d testutil.Delivery, _ int) (int, http.Header) {
		if s.refuse.Load() && bytes.Contains(d.Body, []byte(`"BAD"`)) {
			return http.StatusBadRequest, nil
		}
		return http.StatusOK, nil
	})
	yaml := fmt.Sprintf(`node_id: console-node
admin:
  token: %s
  account_tokens: {acme: %s}
  trace_url: "%s{trace_id}?event={event_id}"
sinks:
  - name: hook
    type: webhook
    url: %s
    bearer_token: %s
    secret: %s
    retry: {initial: 50ms, max_attempts: 2}
`, adminToken, acmeToken, traceURLBase, s.rcv.URL(), hookSecret, signingKey)
	s.node = testutil.StartNode(t, yaml, nil)
	srv, err := httpserve.Listen("127.0.0.1:0", s.node.AdminHandler(), httpserve.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	s.url = srv.URL()
	s.pub = s.node.Publisher(t)
	nc, err := nats.Connect(s.node.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if s.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return s
}

// traced is the trace every event the site emits belongs to, as if its
// producer had started it.
var traced = trace.NewSpanContext(trace.SpanContextConfig{
	TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
	SpanID:  trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}, TraceFlags: trace.FlagsSampled, Remote: true,
})

// emit stores n events of a type for an account and returns their ids.
func (s *site) emit(t *testing.T, n int, typ, account string) []string {
	t.Helper()
	var ids []string
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), traced)
	for i := range n {
		id, err := s.pub.Emit(ctx, event.Envelope{Type: typ, Account: account,
			Description: fmt.Sprintf("%s number %d", strings.ToLower(typ), i), Data: []byte(fmt.Sprintf(`{"n":%d}`, i))})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// deadLetters waits until the hook sink has want dead letters.
func (s *site) deadLetters(t *testing.T, want uint64) {
	t.Helper()
	dlq := outbox.NewDeadLetters(s.js)
	testutil.Eventually(t, 30*time.Second, func() bool {
		n, err := dlq.Count(context.Background(), "hook")
		return err == nil && n == want
	}, "%d dead letters", want)
}

// logged waits until the event log shows every id delivered to hook or
// dead-lettered there.
func (s *site) logged(t *testing.T, ids []string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() bool {
		for _, id := range ids {
			resp := s.node.EventLogDo(context.Background(), eventlogShow(id))
			if resp.Error != "" || resp.Event.Deliveries["hook"].State == "pending" || resp.Event.Deliveries["hook"].State == "" {
				return false
			}
		}
		return true
	}, "every event logged with its outcome")
}

func eventlogShow(id string) eventlog.Request { return eventlog.Request{Op: eventlog.OpShow, ID: id} }

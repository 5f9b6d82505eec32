package amqp_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/retry"
	amqpsink "github.com/courierhq/courier/sinks/amqp"
)

// These tests run against a real RabbitMQ: COURIER_TEST_AMQP_URL, or the
// development machines' local broker.
const defaultBrokerURL = "amqp://guest:guest@127.0.0.1:5672/"

func brokerURL() string {
	if u := os.Getenv("COURIER_TEST_AMQP_URL"); u != "" {
		return u
	}
	return defaultBrokerURL
}

// broker returns an admin channel on the test broker, for declaring and
// reading what the sink publishes. Without a broker the test is skipped,
// except in CI, where a missing broker is a failure.
func broker(t testing.TB) *amqp091.Channel {
	t.Helper()
	conn, err := amqp091.DialConfig(brokerURL(), amqp091.Config{Dial: amqp091.DefaultDial(5 * time.Second)})
	if err != nil {
		redacted := "(invalid url)"
		if u, perr := url.Parse(brokerURL()); perr == nil {
			redacted = u.Redacted()
		}
		if os.Getenv("CI") != "" {
			t.Fatalf("RabbitMQ at %s is unreachable, and CI requires it: %v", redacted, err)
		}
		t.Skipf("RabbitMQ at %s is unreachable (start it with rabbitmq-server -detached, or set COURIER_TEST_AMQP_URL): %v", redacted, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("open admin channel: %v", err)
	}
	return ch
}

// uniqueName is an exchange or queue name no other test (or run) uses.
func uniqueName(t testing.TB, what string) string {
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '-'
	}, t.Name())
	if len(clean) > 150 {
		clean = clean[:150]
	}
	return fmt.Sprintf("courier-test-%s-%s-%d", clean, what, time.Now().UnixNano())
}

// declareExchange declares a topic exchange (deleted when the test ends)
// and, for each binding key, a queue bound to it with that key.
func declareExchange(t testing.TB, ch *amqp091.Channel, bindings ...string) (exchange string, queues []string) {
	t.Helper()
	exchange = uniqueName(t, "x")
	if err := ch.ExchangeDeclare(exchange, "topic", false, false, false, false, nil); err != nil {
		t.Fatalf("declare exchange: %v", err)
	}
	t.Cleanup(func() { _ = ch.ExchangeDelete(exchange, false, false) })
	for i, key := range bindings {
		q := uniqueName(t, fmt.Sprintf("q%d", i))
		if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
			t.Fatalf("declare queue: %v", err)
		}
		t.Cleanup(func() { _, _ = ch.QueueDelete(q, false, false, false) })
		if err := ch.QueueBind(q, key, exchange, false, nil); err != nil {
			t.Fatalf("bind queue: %v", err)
		}
		queues = append(queues, q)
	}
	return exchange, queues
}

// get takes the next message from queue. The sink returns only after the
// broker confirmed the message, so it is there already; the deadline only
// guards against a broken test.
func get(t testing.TB, ch *amqp091.Channel, queue string) amqp091.Delivery {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get from %s: %v", queue, err)
		}
		if ok {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message in %s", queue)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// queued counts the messages waiting in queue.
func queued(t testing.TB, ch *amqp091.Channel, queue string) int {
	t.Helper()
	q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
	if err != nil {
		t.Fatalf("inspect %s: %v", queue, err)
	}
	return q.Messages
}

func newSink(t testing.TB, cfg amqpsink.Config, format event.Format) *amqpsink.Sink {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = brokerURL()
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	s, err := amqpsink.New(cfg, format, 16, "test")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func testEvent(id string) *event.Envelope {
	return &event.Envelope{
		ID:      id,
		Type:    "VOLUME_CREATE",
		Source:  "glusterd",
		Node:    "gluster-1",
		Time:    time.Date(2024, 7, 1, 11, 59, 58, 0, time.UTC),
		Key:     "gv0",
		Level:   event.LevelInfo,
		State:   event.StateCompleted,
		StartID: "s1",
		Data:    json.RawMessage(`{"name":"gv0","bricks":3}`),
	}
}

func send(t testing.TB, ctx context.Context, s *amqpsink.Sink, e *event.Envelope) {
	t.Helper()
	if err := s.Send(ctx, e); err != nil {
		t.Fatalf("Send(%s): %v", e.ID, err)
	}
}

// wantKind fails unless err is a failure of that kind, and returns it.
func wantKind(t testing.TB, err error, kind retry.Kind) *retry.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("Send = nil, want a %s failure", kind)
	}
	var re *retry.Error
	if !errors.As(err, &re) {
		t.Fatalf("Send = %v (%T), want a *retry.Error", err, err)
	}
	if re.Kind != kind {
		t.Fatalf("Send = %v, classified %s, want %s", err, re.Kind, kind)
	}
	return re
}

func TestSendPublishesAPersistentMessageWithTheEventsProperties(t *testing.T) {
	ch := broker(t)
	exchange, queues := declareExchange(t, ch, "#")
	s := newSink(t, amqpsink.Config{Exchange: exchange}, event.FormatCourier)

	traceID := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	spanID := trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled, Remote: true,
	}))
	e := testEvent("0190f5c2-7d3e-7c4a-9a7b-1f2e3d4c5b6a")
	send(t, ctx, s, e)

	d := get(t, ch, queues[0])
	checks := []struct {
		what      string
		got, want any
	}{
		{"delivery mode", d.DeliveryMode, amqp091.Persistent},
		{"message id", d.MessageId, e.ID},
		{"content type", d.ContentType, event.ContentTypeJSON},
		{"type", d.Type, e.Type},
		{"app id", d.AppId, "courier"},
		{"timestamp", d.Timestamp.UTC(), e.Time},
		{"routing key (default template)", d.RoutingKey, "VOLUME_CREATE"},
		{"courier-event-type header", d.Headers["courier-event-type"], e.Type},
		{"traceparent header", d.Headers["traceparent"], "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v (%T), want %v (%T)", c.what, c.got, c.got, c.want, c.want)
		}
	}
	var body event.Envelope
	if err := json.Unmarshal(d.Body, &body); err != nil {
		t.Fatalf("body %s: %v", d.Body, err)
	}
	if body.ID != e.ID || body.Type != e.Type || string(body.Data) != string(e.Data) {
		t.Errorf("body = %s, want the courier envelope of %s", d.Body, e.ID)
	}
}

func TestSendWithoutASpanAddsNoTraceHeaders(t *testing.T) {
	ch := broker(t)
	exchange, queues := declareExchange(t, ch, "#")
	s := newSink(t, amqpsink.Config{Exchange: exchange}, event.FormatCourier)
	send(t, context.Background(), s, testEvent("no-span"))
	d := get(t, ch, queues[0])
	if v, ok := d.Headers["traceparent"]; ok {
		t.Errorf("traceparent = %v without a span in the context", v)
	}
}

func TestRoutingKeyTemplateIsFilledFromTheEvent(t *testing.T) {
	ch := broker(t)
	exchange, queues := declareExchange(t, ch, "#")
	for _, tc := range []struct{ template, want string }{
		{"{type}", "VOLUME_CREATE"},
		{"gluster.{node}.{key}", "gluster.gluster-1.gv0"},
		{"{source}.{type}.{level}.{state}", "glusterd.VOLUME_CREATE.INFO.Completed"},
		{"events", "events"},
	} {
		t.Run(tc.template, func(t *testing.T) {
			s := newSink(t, amqpsink.Config{Exchange: exchange, RoutingKey: tc.template}, event.FormatCourier)
			send(t, context.Background(), s, testEvent("key-"+tc.want))
			if d := get(t, ch, queues[0]); d.RoutingKey != tc.want {
				t.Errorf("routing key = %q, want %q", d.RoutingKey, tc.want)
			}
		})
	}
}

func TestGlusterFormatSendsGlusterBody(t *testing.T) {
	ch := broker(t)
	exchange, queues := declareExchange(t, ch, "#")
	s := newSink(t, amqpsink.Config{Exchange: exchange}, event.FormatGluster)
	e := testEvent("gluster-1")
	send(t, context.Background(), s, e)

	d := get(t, ch, queues[0])
	var body struct {
		NodeID  string          `json:"nodeid"`
		TS      int64           `json:"ts"`
		Event   string          `json:"event"`
		Message json.RawMessage `json:"message"`
	}
	if err := json.Unmarshal(d.Body, &body); err != nil {
		t.Fatalf("body %s: %v", d.Body, err)
	}
	if body.NodeID != e.Node || body.TS != e.Time.Unix() || body.Event != e.Type || string(body.Message) != string(e.Data) {
		t.Errorf("body = %s, want gluster's {nodeid, ts, event, message} of the event", d.Body)
	}
	if d.MessageId != e.ID || d.ContentType != event.ContentTypeJSON {
		t.Errorf("message id %q, content type %q; want %q, %q", d.MessageId, d.ContentType, e.ID, event.ContentTypeJSON)
	}
}

func TestCloudEventsBinaryModeSendsAttributesAsHeaders(t *testing.T) {
	ch := broker(t)
	exchange, queues := declareExchange(t, ch, "#")
	s := newSink(t, amqpsink.Config{Exchange: exchange, CloudEventsMode: "binary"}, event.FormatCloudEvents)
	e := testEvent("ce-binary-1")
	send(t, context.Background(), s, e)

	d := get(t, ch, queues[0])
	if string(d.Body) != string(e.Data) {
		t.Errorf("body = %s, want the data alone %s", d.Body, e.Data)
	}
	if d.ContentType != event.ContentTypeJSON {
		t.Errorf("content type = %q, want the data's %q", d.ContentType, event.ContentTypeJSON)
	}
	for attr, want := range map[string]string{
		"specversion": "1.0", "id": e.ID, "type": e.Type, "source": e.Source,
		"time": "2024-07-01T11:59:58Z", "subject": e.Key, "level": "INFO",
		"state": "Completed", "startid": "s1", "node": e.Node,
	} {
		if got := d.Headers["cloudEvents_"+attr]; got != want {
			t.Errorf("header cloudEvents_%s = %v, want %q", attr, got, want)
		}
	}
}

func TestCloudEventsStructuredModeSendsTheWholeEvent(t *testing.T) {
	ch := broker(t)
	exchange, queues := declareExchange(t, ch, "#")
	s := newSink(t, amqpsink.Config{Exchange: exchange}, event.FormatCloudEvents)
	e := testEvent("ce-structured-1")
	send(t, context.Background(), s, e)

	d := get(t, ch, queues[0])
	if d.ContentType != event.ContentTypeCloudEvents {
		t.Errorf("content type = %q, want %q", d.ContentType, event.ContentTypeCloudEvents)
	}
	var ce struct {
		SpecVersion string          `json:"specversion"`
		ID          string          `json:"id"`
		Data        json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(d.Body, &ce); err != nil || ce.SpecVersion != "1.0" || ce.ID != e.ID || string(ce.Data) != string(e.Data) {
		t.Errorf("body = %s (%v), want a CloudEvents 1.0 event with the id and data", d.Body, err)
	}
	if _, ok := d.Headers["cloudEvents_id"]; ok {
		t.Error("structured mode sent binary-mode headers")
	}
}

func TestUnroutableEventIsPermanentFailureWhenMandatory(t *testing.T) {
	ch := broker(t)
	exchange, _ := declareExchange(t, ch) // no queue bound
	s := newSink(t, amqpsink.Config{Exchange: exchange}, event.FormatCourier)
	re := wantKind(t, s.Send(context.Background(), testEvent("unroutable-1")), retry.Permanent)
	if !strings.Contains(re.Error(), "unroutable") || !strings.Contains(re.Error(), `"VOLUME_CREATE"`) {
		t.Errorf("error %q should say the event is unroutable and name its routing key", re)
	}
	// The channel survives a return: the next routable event is delivered.
	q := uniqueName(t, "late")
	if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = ch.QueueDelete(q, false, false, false) })
	if err := ch.QueueBind(q, "#", exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	send(t, context.Background(), s, testEvent("routable-after-return"))
	if d := get(t, ch, q); d.MessageId != "routable-after-return" {
		t.Errorf("got %s, want routable-after-return", d.MessageId)
	}
}

func TestUnroutableEventIsDroppedSilentlyWhenNotMandatory(t *testing.T) {
	ch := broker(t)
	exchange, _ := declareExchange(t, ch)
	no := false
	s := newSink(t, amqpsink.Config{Exchange: exchange, Mandatory: &no}, event.FormatCourier)
	if err := s.Send(context.Background(), testEvent("dropped-1")); err != nil {
		t.Fatalf("Send = %v, want nil: mandatory is off", err)
	}
}

// Returns and confirms of concurrent publishes interleave on one channel;
// each Send must get the outcome of its own publish.
func TestConcurrentSendsEachGetTheirOwnReturnOrConfirm(t *testing.T) {
	ch := broker(t)
	exchange, queues := declareExchange(t, ch, "routed")
	s := newSink(t, amqpsink.Config{Exchange: exchange, RoutingKey: "{key}"}, event.FormatCourier)

	const n, workers = 400, 32
	var (
		wg           sync.WaitGroup
		next         atomic.Int64
		wrong        atomic.Int64
		routedOK     atomic.Int64
		unroutedPerm atomic.Int64
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < n; i = next.Add(1) - 1 {
				e := testEvent(fmt.Sprintf("mixed-%04d", i))
				e.Key = "routed"
				if i%2 == 1 {
					e.Key = "nowhere"
				}
				err := s.Send(context.Background(), e)
				switch {
				case e.Key == "routed" && err == nil:
					routedOK.Add(1)
				case e.Key == "nowhere" && err != nil && retry.Classify(err).Kind == retry.Permanent:
					unroutedPerm.Add(1)
				default:
					wrong.Add(1)
					t.Errorf("event %s (key %s): Send = %v", e.ID, e.Key, err)
				}
			}
		}()
	}
	wg.Wait()
	if routedOK.Load() != n/2 || unroutedPerm.Load() != n/2 || wrong.Load() != 0 {
		t.Fatalf("routed ok %d, unroutable permanent %d, wrong %d; want %d, %d, 0",
			routedOK.Load(), unroutedPerm.Load(), wrong.Load(), n/2, n/2)
	}
	if got := queued(t, ch, queues[0]); got != n/2 {
		t.Errorf("queue holds %d messages, want %d", got, n/2)
	}
}

func TestDeclareCreatesADurableExchange(t *testing.T) {
	ch := broker(t)
	exchange := uniqueName(t, "x")
	t.Cleanup(func() { _ = ch.ExchangeDelete(exchange, false, false) })
	no := false
	s := newSink(t, amqpsink.Config{Exchange: exchange, Declare: true, Mandatory: &no}, event.FormatCourier)
	send(t, context.Background(), s, testEvent("declared-1"))
	// A durable topic exchange passes a passive declare with those settings;
	// with others the broker would close the channel.
	if err := ch.ExchangeDeclarePassive(exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatalf("exchange not declared: %v", err)
	}
}

func TestDeclareOverAnExchangeOfAnotherTypeIsPermanent(t *testing.T) {
	ch := broker(t)
	exchange, _ := declareExchange(t, ch) // non-durable topic
	s := newSink(t, amqpsink.Config{Exchange: exchange, Declare: true, ExchangeType: "fanout"}, event.FormatCourier)
	re := wantKind(t, s.Send(context.Background(), testEvent("mismatch-1")), retry.Permanent)
	if !strings.Contains(re.Error(), "exists with other settings") {
		t.Errorf("error %q should say the exchange exists with other settings", re)
	}
}

func TestMissingExchangeIsPermanentUntilItIsCreated(t *testing.T) {
	ch := broker(t)
	exchange := uniqueName(t, "x")
	s := newSink(t, amqpsink.Config{Exchange: exchange}, event.FormatCourier)
	re := wantKind(t, s.Send(context.Background(), testEvent("missing-1")), retry.Permanent)
	if !strings.Contains(re.Error(), "does not exist") {
		t.Errorf("error %q should say the exchange does not exist", re)
	}

	// Once an operator creates it, the sink delivers (after its redial
	// interval) without a restart.
	if err := ch.ExchangeDeclare(exchange, "topic", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.ExchangeDelete(exchange, false, false) })
	q := uniqueName(t, "q")
	if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = ch.QueueDelete(q, false, false, false) })
	if err := ch.QueueBind(q, "#", exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	sendEventually(t, s, testEvent("missing-2"))
	if d := get(t, ch, q); d.MessageId != "missing-2" {
		t.Errorf("got %s, want missing-2", d.MessageId)
	}
}

// The broker closes the channel (404) when a publish names an exchange that
// was deleted under the sink: the Send fails permanently, and the sink
// reconnects by itself once the exchange is back.
func TestExchangeDeletedUnderTheSinkIsPermanentAndTheSinkRecovers(t *testing.T) {
	ch := broker(t)
	exchange, queues := declareExchange(t, ch, "#")
	s := newSink(t, amqpsink.Config{Exchange: exchange}, event.FormatCourier)
	send(t, context.Background(), s, testEvent("before-delete"))

	if err := ch.ExchangeDelete(exchange, false, false); err != nil {
		t.Fatal(err)
	}
	re := wantKind(t, s.Send(context.Background(), testEvent("after-delete")), retry.Permanent)
	if !strings.Contains(re.Error(), "does not exist") {
		t.Errorf("error %q should say the exchange does not exist", re)
	}

	if err := ch.ExchangeDeclare(exchange, "topic", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(queues[0], "#", exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	sendEventually(t, s, testEvent("after-recreate"))
	for _, want := range []string{"before-delete", "after-recreate"} {
		if d := get(t, ch, queues[0]); d.MessageId != want {
			t.Errorf("got %s, want %s", d.MessageId, want)
		}
	}
}

// sendEventually retries Send as the delivery loop would, until it succeeds.
func sendEventually(t testing.TB, s *amqpsink.Sink, e *event.Envelope) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.Send(context.Background(), e)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Send(%s) still failing: %v", e.ID, err)
		}
		time.Sleep(20 * time.Millisecond) // the delivery loop's backoff, shortened
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestSinkStartsWhileTheBrokerIsDownAndSendsFailRetryable(t *testing.T) {
	const password = "s3cret-pw-down"
	s := newSink(t, amqpsink.Config{URL: "amqp://courier:" + password + "@" + closedPort(t) + "/", Exchange: "events"}, event.FormatCourier)
	for i := range 3 {
		start := time.Now()
		re := wantKind(t, s.Send(context.Background(), testEvent(fmt.Sprintf("down-%d", i))), retry.Retryable)
		if strings.Contains(re.Error(), password) {
			t.Fatalf("error %q shows the password", re)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Send to a refused port took %s", took)
		}
	}
}

// While the broker is down, Sends do not dial it each time: one attempt per
// redial interval, the others fail fast with that attempt's error.
func TestSendDialsADownBrokerAtMostTwicePerSecond(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var dials atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			_ = c.Close() // a broker that hangs up at once
		}
	}()
	s := newSink(t, amqpsink.Config{URL: "amqp://guest:guest@" + ln.Addr().String() + "/", Exchange: "events"}, event.FormatCourier)
	start := time.Now()
	sends := 0
	for time.Since(start) < 1200*time.Millisecond {
		wantKind(t, s.Send(context.Background(), testEvent(fmt.Sprintf("hangup-%d", sends))), retry.Retryable)
		sends++
	}
	elapsed := time.Since(start)
	limit := int64(elapsed/(500*time.Millisecond)) + 1
	if got := dials.Load(); got > limit || got == 0 {
		t.Errorf("%d sends in %s dialled %d times, want 1 to %d", sends, elapsed.Round(time.Millisecond), got, limit)
	}
	t.Logf("%d sends in %s dialled %d times", sends, elapsed.Round(time.Millisecond), dials.Load())
}

// silentBroker accepts connections and never answers, as a hung broker (or
// a black-holing network) would.
func silentBroker(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}

func TestSendHonoursTheTimeoutWhenTheBrokerHangs(t *testing.T) {
	addr := silentBroker(t)
	s := newSink(t, amqpsink.Config{URL: "amqp://guest:guest@" + addr + "/", Exchange: "events", Timeout: 300 * time.Millisecond}, event.FormatCourier)
	start := time.Now()
	wantKind(t, s.Send(context.Background(), testEvent("hung-1")), retry.Retryable)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Send took %s with a 300ms timeout", took)
	}
}

func TestSendHonoursTheContextWhenTheBrokerHangs(t *testing.T) {
	addr := silentBroker(t)
	s := newSink(t, amqpsink.Config{URL: "amqp://guest:guest@" + addr + "/", Exchange: "events", Timeout: time.Minute}, event.FormatCourier)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	re := wantKind(t, s.Send(ctx, testEvent("hung-2")), retry.Retryable)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Send took %s with a 200ms context", took)
	}
	if !errors.Is(re, context.DeadlineExceeded) {
		t.Errorf("error %q should wrap the context's deadline", re)
	}
	// The dial still hangs in the background (its own bound is a minute);
	// Close cuts it short.
	closeCtx, cancelClose := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelClose()
	if err := s.Close(closeCtx); err != nil {
		t.Errorf("Close with a dial hanging: %v", err)
	}
}

func TestRefusedLoginIsPermanentAndDoesNotShowThePassword(t *testing.T) {
	broker(t)
	u, err := url.Parse(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	const password = "wrong-pw-7f3a"
	u.User = url.UserPassword(u.User.Username(), password)
	s := newSink(t, amqpsink.Config{URL: u.String(), Exchange: "amq.topic"}, event.FormatCourier)
	re := wantKind(t, s.Send(context.Background(), testEvent("login-1")), retry.Permanent)
	if strings.Contains(re.Error(), password) {
		t.Fatalf("error %q shows the password", re)
	}
	if !strings.Contains(re.Error(), "xxxxx") {
		t.Errorf("error %q should name the broker by its redacted URL", re)
	}
}

func TestInvalidConfigIsRefusedWithoutShowingThePassword(t *testing.T) {
	const password = "hunter2-secret"
	good := amqpsink.Config{URL: "amqp://courier:" + password + "@rabbit:5672/", Exchange: "events"}
	for _, tc := range []struct {
		name   string
		change func(*amqpsink.Config)
		want   string
	}{
		{"no exchange", func(c *amqpsink.Config) { c.Exchange = "" }, "exchange is required"},
		{"http scheme", func(c *amqpsink.Config) { c.URL = "http://courier:" + password + "@rabbit/" }, "want amqp://"},
		{"no host", func(c *amqpsink.Config) { c.URL = "amqp://courier:" + password + "@/" }, "want amqp://"},
		{"unparsable url", func(c *amqpsink.Config) { c.URL = "amqp://courier:" + password + "@rab bit:x/" }, "not a valid URL"},
		{"bad query option", func(c *amqpsink.Config) { c.URL = "amqp://courier:" + password + "@rabbit/?heartbeat=soon" }, "heartbeat"},
		{"unknown placeholder", func(c *amqpsink.Config) { c.RoutingKey = "{type}.{vol}" }, "unknown placeholder {vol}"},
		{"unclosed placeholder", func(c *amqpsink.Config) { c.RoutingKey = "{type" }, "'{' without '}'"},
		{"stray brace", func(c *amqpsink.Config) { c.RoutingKey = "type}" }, "'}' without '{'"},
		{"exchange type", func(c *amqpsink.Config) { c.ExchangeType = "broadcast" }, "exchange_type"},
		{"reserved name", func(c *amqpsink.Config) { c.Exchange, c.Declare = "amq.topic", true }, "reserved"},
		{"cloudevents mode", func(c *amqpsink.Config) { c.CloudEventsMode = "batched" }, "cloudevents_mode"},
		{"negative timeout", func(c *amqpsink.Config) { c.Timeout = -time.Second }, "timeout"},
		{"tls without amqps", func(c *amqpsink.Config) { c.TLS.InsecureSkipVerify = true }, "not amqps://"},
		{"cert without key", func(c *amqpsink.Config) {
			c.URL = "amqps://courier:" + password + "@rabbit/"
			c.TLS.CertFile = "client.pem"
		}, "cert_file and key_file"},
		{"missing ca file", func(c *amqpsink.Config) {
			c.URL = "amqps://courier:" + password + "@rabbit/"
			c.TLS.CAFile = "/nonexistent/ca.pem"
		}, "ca_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.change(&cfg)
			_, err := amqpsink.New(cfg, event.FormatCourier, 4, "test")
			if err == nil {
				t.Fatal("New accepted the configuration")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q should mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
	if _, err := amqpsink.New(good, event.FormatCourier, 4, "test"); err != nil {
		t.Errorf("New(valid config) = %v", err)
	}
	if _, err := amqpsink.New(good, event.Format("xml"), 4, "test"); err == nil {
		t.Error("New accepted an unknown format")
	}
}

func TestConfigDefaults(t *testing.T) {
	c := amqpsink.Config{URL: "amqp://rabbit/", Exchange: "events"}.WithDefaults()
	if c.ExchangeType != "topic" || c.RoutingKey != "{type}" || c.CloudEventsMode != "structured" ||
		c.Timeout != 15*time.Second || c.Mandatory == nil || !*c.Mandatory {
		t.Errorf("defaults = %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate(defaults) = %v", err)
	}
	no := false
	if c := (amqpsink.Config{Mandatory: &no}).WithDefaults(); *c.Mandatory {
		t.Error("WithDefaults overrode mandatory: false")
	}
}

func TestCloseLetsSendsInFlightFinishAndLaterSendsFailRetryable(t *testing.T) {
	ch := broker(t)
	exchange, queues := declareExchange(t, ch, "#")
	s := newSink(t, amqpsink.Config{Exchange: exchange}, event.FormatCourier)
	send(t, context.Background(), s, testEvent("closing-first"))

	// Close races with 200 Sends: each either was published before Close
	// and gets its confirm, or fails retryable. Nothing is reported
	// delivered that the queue does not hold.
	const n = 200
	var (
		wg        sync.WaitGroup
		delivered atomic.Int64
		finished  = make(chan struct{}, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Send(context.Background(), testEvent(fmt.Sprintf("closing-%03d", i)))
			if err == nil {
				delivered.Add(1)
			} else if k := retry.Classify(err).Kind; k != retry.Retryable {
				t.Errorf("Send during Close: %v classified %s, want retryable", err, k)
			}
			finished <- struct{}{}
		}()
	}
	// Close once the Sends are under way: some done, others in flight.
	for range 20 {
		<-finished
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	if got, want := queued(t, ch, queues[0]), int(delivered.Load())+1; got != want {
		t.Errorf("queue holds %d messages, but %d Sends reported delivery", got, want)
	}
	t.Logf("%d of %d racing Sends delivered", delivered.Load(), n)
	wantKind(t, s.Send(context.Background(), testEvent("after-close")), retry.Retryable)
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// BenchmarkSend measures confirmed publishes: one at a time, and from
// 16×GOMAXPROCS goroutines sharing the sink (pipelined confirms).
func BenchmarkSend(b *testing.B) {
	ch := broker(b)
	exchange, queues := declareExchange(b, ch, "#")
	b.Cleanup(func() { _, _ = ch.QueuePurge(queues[0], false) })
	s := newSink(b, amqpsink.Config{Exchange: exchange}, event.FormatCourier)
	e := testEvent("bench")
	b.Run("sequential", func(b *testing.B) {
		for b.Loop() {
			if err := s.Send(context.Background(), e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := s.Send(context.Background(), e); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// tlsFrontend terminates TLS in front of the test broker with a
// certificate for 127.0.0.1 signed by a fresh CA, and returns its address
// and the CA's PEM file.
func tlsFrontend(t *testing.T) (addr, caFile string) {
	t.Helper()
	u, err := url.Parse(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5672")
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "courier test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}},
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				_ = client.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, client, server)
			mu.Unlock()
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				_, _ = io.Copy(dst, src)
				_ = dst.Close()
				_ = src.Close()
			}
			go pipe(server, client)
			go pipe(client, server)
		}
	}()
	return ln.Addr().String(), caFile
}

func TestAMQPSVerifiesTheBrokerWithTheConfiguredCA(t *testing.T) {
	ch := broker(t)
	exchange, queues := declareExchange(t, ch, "#")
	addr, caFile := tlsFrontend(t)
	u, err := url.Parse(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Scheme, u.Host = "amqps", addr

	s := newSink(t, amqpsink.Config{URL: u.String(), Exchange: exchange, TLS: amqpsink.TLSConfig{CAFile: caFile}}, event.FormatCourier)
	send(t, context.Background(), s, testEvent("over-tls"))
	if d := get(t, ch, queues[0]); d.MessageId != "over-tls" {
		t.Errorf("got %s, want over-tls", d.MessageId)
	}

	// Without the CA, the system roots do not trust the broker.
	untrusting := newSink(t, amqpsink.Config{URL: u.String(), Exchange: exchange}, event.FormatCourier)
	re := wantKind(t, untrusting.Send(context.Background(), testEvent("untrusted")), retry.Retryable)
	var unknownCA x509.UnknownAuthorityError
	if !errors.As(re, &unknownCA) {
		t.Errorf("error %q should be the certificate check's", re)
	}
}

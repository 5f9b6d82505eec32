package kafka_test

import (
	"bytes"
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
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/retry"
	"github.com/courierhq/courier/sinks/kafka"
	"github.com/courierhq/courier/sinks/sinktest"
)

// startCluster starts a one-broker in-process Kafka (kfake speaks the real
// wire protocol) and returns it with its address. It stops with the test.
func startCluster(t testing.TB, opts ...kfake.Opt) (*kfake.Cluster, string) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()[0]
}

// newSink builds a sink that is closed when the test ends.
func newSink(t testing.TB, cfg kafka.Config, format event.Format, concurrency int) *kafka.Sink {
	t.Helper()
	s, err := kafka.New(cfg, format, concurrency, "test")
	if err != nil {
		t.Fatalf("new sink: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func send(t testing.TB, s *kafka.Sink, e *event.Envelope) {
	t.Helper()
	sendCtx(t, context.Background(), s, e)
}

func sendCtx(t testing.TB, ctx context.Context, s *kafka.Sink, e *event.Envelope) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := s.Send(ctx, e); err != nil {
		t.Fatalf("send %s: %v", e.ID, err)
	}
}

// readPartition returns the messages of one partition from offset from up
// to its end at the time of the call. A Send that returned nil was
// acknowledged by the broker, so its message is below that end: no waiting
// is needed.
func readPartition(ctx context.Context, d *kafkago.Dialer, addr, topic string, partition int, from int64) ([]kafkago.Message, error) {
	conn, err := d.DialLeader(ctx, "tcp", addr, topic, partition)
	if err != nil {
		return nil, fmt.Errorf("dial leader of %s/%d: %w", topic, partition, err)
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	end, err := conn.ReadLastOffset()
	if err != nil {
		return nil, fmt.Errorf("end offset of %s/%d: %w", topic, partition, err)
	}
	var out []kafkago.Message
	for from < end {
		if _, err := conn.Seek(from, kafkago.SeekAbsolute); err != nil {
			return out, fmt.Errorf("seek %s/%d to %d: %w", topic, partition, from, err)
		}
		batch := conn.ReadBatchWith(kafkago.ReadBatchConfig{MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond})
		before := from
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			m.Partition = partition
			out = append(out, m)
			from = m.Offset + 1
		}
		if err := batch.Close(); err != nil && !errors.Is(err, io.EOF) {
			return out, fmt.Errorf("read %s/%d at %d: %w", topic, partition, before, err)
		}
		if from == before {
			return out, fmt.Errorf("read %s/%d: no progress at offset %d of %d", topic, partition, from, end)
		}
	}
	return out, nil
}

// readTopic returns every message of a topic's partitions.
func readTopic(t testing.TB, addr, topic string, partitions int) []kafkago.Message {
	t.Helper()
	return readTopicWith(t, kafkago.DefaultDialer, addr, topic, partitions)
}

func readTopicWith(t testing.TB, d *kafkago.Dialer, addr, topic string, partitions int) []kafkago.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var all []kafkago.Message
	for p := range partitions {
		msgs, err := readPartition(ctx, d, addr, topic, p, 0)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, msgs...)
	}
	return all
}

func headers(m kafkago.Message) map[string]string {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// limitMessageBytes makes kfake enforce a max.message.bytes, as a real
// broker does: kfake stores the setting but accepts any size. A produce
// request whose record batch exceeds limit is answered MESSAGE_TOO_LARGE;
// others go on to kfake. kafka-go sends one partition per produce request,
// so refusing the whole request refuses just that batch.
func limitMessageBytes(c *kfake.Cluster, limit int) {
	c.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kr.(*kmsg.ProduceRequest)
		tooLarge := false
		for _, rt := range req.Topics {
			for _, rp := range rt.Partitions {
				tooLarge = tooLarge || len(rp.Records) > limit
			}
		}
		if !tooLarge {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = int16(kafkago.MessageSizeTooLarge)
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

func wantKind(t testing.TB, err error, want retry.Kind) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want a %s one", want)
	}
	if got := retry.Classify(err).Kind; got != want {
		t.Fatalf("%v: classified %s, want %s", err, got, want)
	}
	t.Logf("as expected: %v", err)
}

func TestSendWritesHeadersKeyTimeAndTraceContext(t *testing.T) {
	_, addr := startCluster(t, kfake.SeedTopics(1, "events"))
	s := newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "events"}, event.FormatCourier, 4)

	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled,
	}))
	traced := sinktest.NewEvent("evt-traced")
	plain := sinktest.NewEvent("evt-plain")
	sendCtx(t, ctx, s, traced)
	send(t, s, plain)

	msgs := readTopic(t, addr, "events", 1)
	if len(msgs) != 2 {
		t.Fatalf("got %d messages, want 2", len(msgs))
	}
	m := msgs[0]
	h := headers(m)
	for k, want := range map[string]string{
		kafka.HeaderEventID:     traced.ID,
		kafka.HeaderEventType:   "VOLUME_CREATE",
		kafka.HeaderContentType: event.ContentTypeJSON,
		"traceparent":           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	} {
		if h[k] != want {
			t.Errorf("header %s = %q, want %q (all: %v)", k, h[k], want, h)
		}
	}
	if string(m.Key) != "gv1" {
		t.Errorf("key %q, want the event key gv1", m.Key)
	}
	if !m.Time.Equal(traced.Time.Truncate(time.Millisecond)) {
		t.Errorf("time %s, want the event time %s", m.Time, traced.Time)
	}
	got, err := event.Decode(m.Value)
	if err != nil {
		t.Fatalf("body %s: %v", m.Value, err)
	}
	if got.ID != traced.ID || got.Type != traced.Type || string(got.Data) != string(traced.Data) {
		t.Errorf("body %+v, want %+v", got, traced)
	}
	if _, ok := headers(msgs[1])["traceparent"]; ok {
		t.Errorf("an event sent without a span context got a traceparent: %v", headers(msgs[1]))
	}
}

func TestKeySelection(t *testing.T) {
	_, addr := startCluster(t, kfake.SeedTopics(1, "keys"))
	keyed := sinktest.NewEvent("keyed")
	unkeyed := sinktest.NewEvent("unkeyed")
	unkeyed.Key = ""
	byID := sinktest.NewEvent("by-id")
	send(t, newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "keys"}, event.FormatCourier, 1), keyed)
	send(t, newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "keys", Key: kafka.KeyEventKey}, event.FormatCourier, 1), unkeyed)
	send(t, newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "keys", Key: kafka.KeyEventID}, event.FormatCourier, 1), byID)

	want := map[string]string{"keyed": "gv1", "unkeyed": "unkeyed", "by-id": "by-id"}
	msgs := readTopic(t, addr, "keys", 1)
	if len(msgs) != len(want) {
		t.Fatalf("got %d messages, want %d", len(msgs), len(want))
	}
	for _, m := range msgs {
		id := headers(m)[kafka.HeaderEventID]
		if string(m.Key) != want[id] {
			t.Errorf("event %s: key %q, want %q", id, m.Key, want[id])
		}
	}
}

func TestSameKeyGoesToOnePartition(t *testing.T) {
	const partitions = 8
	_, addr := startCluster(t, kfake.SeedTopics(partitions, "spread"))
	s := newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "spread"}, event.FormatCourier, 16)
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := sinktest.NewEvent(fmt.Sprintf("spread-%02d", i))
			switch i % 3 {
			case 0:
				e.Key = "volume-a"
			case 1:
				e.Key = "volume-b"
			default:
				e.Key = "" // falls back to the id: one key per event
			}
			if err := s.Send(context.Background(), e); err != nil {
				t.Errorf("send: %v", err)
			}
		}()
	}
	wg.Wait()
	msgs := readTopic(t, addr, "spread", partitions)
	if len(msgs) != 60 {
		t.Fatalf("got %d messages, want 60", len(msgs))
	}
	byKey := map[string]map[int]bool{}
	for _, m := range msgs {
		k := string(m.Key)
		if !strings.HasPrefix(k, "volume-") {
			k = "distinct"
		}
		if byKey[k] == nil {
			byKey[k] = map[int]bool{}
		}
		byKey[k][m.Partition] = true
	}
	for _, k := range []string{"volume-a", "volume-b"} {
		if len(byKey[k]) != 1 {
			t.Errorf("key %s spread over partitions %v, want one", k, byKey[k])
		}
	}
	if len(byKey["distinct"]) < 2 {
		t.Errorf("20 distinct keys all went to partitions %v: not hashed", byKey["distinct"])
	}
}

func TestTopicTemplateRoutesEachEvent(t *testing.T) {
	_, addr := startCluster(t, kfake.SeedTopics(1, "courier.VOLUME_CREATE.node-a", "courier.VOLUME_DELETE.node-a"))
	s := newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "courier.{type}.{node}"}, event.FormatCourier, 4)
	created := sinktest.NewEvent("created")
	deleted := sinktest.NewEvent("deleted")
	deleted.Type = "VOLUME_DELETE"
	send(t, s, created)
	send(t, s, deleted)
	for topic, id := range map[string]string{"courier.VOLUME_CREATE.node-a": "created", "courier.VOLUME_DELETE.node-a": "deleted"} {
		msgs := readTopic(t, addr, topic, 1)
		if len(msgs) != 1 || headers(msgs[0])[kafka.HeaderEventID] != id {
			t.Errorf("topic %s holds %d messages (%v), want just event %s", topic, len(msgs), msgs, id)
		}
	}
}

func TestTopicThatCannotBeANameIsPermanent(t *testing.T) {
	_, addr := startCluster(t)
	s := newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "courier.{type}"}, event.FormatCourier, 1)
	e := sinktest.NewEvent("colon")
	e.Type = "VOLUME:CREATE" // a valid event type, not a valid topic name
	err := s.Send(context.Background(), e)
	wantKind(t, err, retry.Permanent)
	if !strings.Contains(err.Error(), "courier.VOLUME:CREATE") {
		t.Errorf("error %q does not name the topic", err)
	}
}

func TestUnknownTopicIsPermanent(t *testing.T) {
	_, addr := startCluster(t, kfake.SeedTopics(1, "exists"))
	s := newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "missing-{type}"}, event.FormatCourier, 1)
	err := s.Send(context.Background(), sinktest.NewEvent("nowhere"))
	wantKind(t, err, retry.Permanent)
	if !errors.Is(err, kafkago.UnknownTopicOrPartition) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("error %q should be UnknownTopicOrPartition and say what to do", err)
	}
}

func TestGlusterBody(t *testing.T) {
	_, addr := startCluster(t, kfake.SeedTopics(1, "gluster"))
	s := newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "gluster"}, event.FormatGluster, 1)
	e := sinktest.NewEvent("gluster-1")
	send(t, s, e)
	msgs := readTopic(t, addr, "gluster", 1)
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1", len(msgs))
	}
	var body struct {
		NodeID  string          `json:"nodeid"`
		TS      int64           `json:"ts"`
		Event   string          `json:"event"`
		Message json.RawMessage `json:"message"`
	}
	if err := json.Unmarshal(msgs[0].Value, &body); err != nil {
		t.Fatalf("body %s: %v", msgs[0].Value, err)
	}
	if body.NodeID != "node-a" || body.TS != e.Time.Unix() || body.Event != "VOLUME_CREATE" || string(body.Message) != string(e.Data) {
		t.Errorf("gluster body %s, want nodeid node-a, ts %d, event VOLUME_CREATE, message %s", msgs[0].Value, e.Time.Unix(), e.Data)
	}
	if h := headers(msgs[0]); h[kafka.HeaderEventID] != e.ID || h[kafka.HeaderContentType] != event.ContentTypeJSON {
		t.Errorf("headers %v", h)
	}
}

func TestCloudEvents(t *testing.T) {
	_, addr := startCluster(t, kfake.SeedTopics(1, "ce-binary", "ce-structured"))
	e := sinktest.NewEvent("ce-1")
	e.State = event.StateCompleted
	send(t, newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "ce-binary", CloudEventsMode: "binary"}, event.FormatCloudEvents, 1), e)
	send(t, newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "ce-structured"}, event.FormatCloudEvents, 1), e)

	t.Run("binary", func(t *testing.T) {
		msgs := readTopic(t, addr, "ce-binary", 1)
		if len(msgs) != 1 {
			t.Fatalf("got %d messages, want 1", len(msgs))
		}
		h := headers(msgs[0])
		for k, want := range map[string]string{
			"ce_specversion":        "1.0",
			"ce_id":                 e.ID,
			"ce_source":             "sinktest",
			"ce_type":               "VOLUME_CREATE",
			"ce_time":               e.Time.UTC().Format(time.RFC3339Nano),
			"ce_subject":            "gv1",
			"ce_state":              "Completed",
			"ce_node":               "node-a",
			kafka.HeaderContentType: event.ContentTypeJSON, // the binding's datacontenttype
			kafka.HeaderEventID:     e.ID,
		} {
			if h[k] != want {
				t.Errorf("header %s = %q, want %q", k, h[k], want)
			}
		}
		if string(msgs[0].Value) != string(e.Data) {
			t.Errorf("binary body %s, want the data alone %s", msgs[0].Value, e.Data)
		}
	})
	t.Run("structured", func(t *testing.T) {
		msgs := readTopic(t, addr, "ce-structured", 1)
		if len(msgs) != 1 {
			t.Fatalf("got %d messages, want 1", len(msgs))
		}
		h := headers(msgs[0])
		if h[kafka.HeaderContentType] != event.ContentTypeCloudEvents {
			t.Errorf("content-type %q, want %q", h[kafka.HeaderContentType], event.ContentTypeCloudEvents)
		}
		for k := range h {
			if strings.HasPrefix(k, "ce_") {
				t.Errorf("structured mode carries header %s", k)
			}
		}
		var ce struct {
			SpecVersion string          `json:"specversion"`
			ID          string          `json:"id"`
			Data        json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(msgs[0].Value, &ce); err != nil || ce.SpecVersion != "1.0" || ce.ID != e.ID || string(ce.Data) != string(e.Data) {
			t.Errorf("structured body %s (%v)", msgs[0].Value, err)
		}
	})
}

func TestCompressionCodecs(t *testing.T) {
	_, addr := startCluster(t, kfake.SeedTopics(1, "none", "gzip", "snappy", "lz4", "zstd"))
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			s := newSink(t, kafka.Config{Brokers: []string{addr}, Topic: codec, Compression: codec}, event.FormatCourier, 1)
			e := sinktest.NewEvent("codec-" + codec)
			e.Data = json.RawMessage(`{"padding":"` + strings.Repeat("compressible ", 200) + `"}`)
			send(t, s, e)
			msgs := readTopic(t, addr, codec, 1)
			if len(msgs) != 1 {
				t.Fatalf("got %d messages, want 1", len(msgs))
			}
			got, err := event.Decode(msgs[0].Value)
			if err != nil || got.ID != e.ID || !bytes.Equal(got.Data, e.Data) {
				t.Errorf("read back %s (%v)", msgs[0].Value, err)
			}
		})
	}
}

func TestTooLargeEvent(t *testing.T) {
	c, addr := startCluster(t, kfake.SeedTopics(1, "sized"))
	const limit = 64 << 10
	limitMessageBytes(c, limit)
	withData := func(id string, n int) *event.Envelope {
		e := sinktest.NewEvent(id)
		e.Data = json.RawMessage(`"` + strings.Repeat("x", n) + `"`)
		return e
	}

	t.Run("RefusedByTheBrokerIsPermanent", func(t *testing.T) {
		s := newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "sized"}, event.FormatCourier, 1)
		err := s.Send(context.Background(), withData("too-large-broker", 2*limit))
		wantKind(t, err, retry.Permanent)
		if !errors.Is(err, kafkago.MessageSizeTooLarge) {
			t.Errorf("error %q is not MessageSizeTooLarge", err)
		}
	})
	t.Run("RefusedByTheClientIsPermanent", func(t *testing.T) {
		// Past kafka-go's 1 MiB batch limit nothing is sent at all.
		s := newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "sized"}, event.FormatCourier, 1)
		wantKind(t, s.Send(context.Background(), withData("too-large-client", 2<<20)), retry.Permanent)
	})
	t.Run("RefusedBatchIsRetryable", func(t *testing.T) {
		// Two events that fit alone but not together, in one batch for
		// sure: a batch of two leaves only when both are in it.
		s := newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "sized", BatchTimeout: 10 * time.Second, Timeout: 20 * time.Second},
			event.FormatCourier, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.Send(context.Background(), withData(fmt.Sprintf("half-%d", i), limit*2/3))
			}()
		}
		wg.Wait()
		for _, err := range errs {
			wantKind(t, err, retry.Retryable)
			if !strings.Contains(err.Error(), "batch of 2") {
				t.Errorf("error %q does not blame the batch", err)
			}
		}
		// Alone, as a retry may send it, the event fits.
		alone := newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "sized"}, event.FormatCourier, 1)
		send(t, alone, withData("half-0", limit*2/3))
	})
}

func TestUnreachableBrokerIsRetryableAndNewDoesNotNeedIt(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now
	s, err := kafka.New(kafka.Config{Brokers: []string{addr}, Topic: "events", Timeout: 3 * time.Second}, event.FormatCourier, 1, "test")
	if err != nil {
		t.Fatalf("New with the brokers down: %v", err)
	}
	defer s.Close(context.Background())
	wantKind(t, s.Send(context.Background(), sinktest.NewEvent("down")), retry.Retryable)
}

func TestTimeoutIsRetryable(t *testing.T) {
	c, addr := startCluster(t, kfake.SeedTopics(1, "slow"))
	// Swallow produce requests: the broker never answers.
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return nil, nil, true
	})
	s := newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "slow", Timeout: 300 * time.Millisecond}, event.FormatCourier, 1)
	err := s.Send(context.Background(), sinktest.NewEvent("slow"))
	wantKind(t, err, retry.Retryable)
	// The Send's deadline and the produce request's (WriteTimeout) are the
	// same here; whichever fires first, the error must warn of a duplicate.
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "may still land") {
		t.Errorf("error %q should be a timeout that warns of a duplicate", err)
	}
}

func TestCloseGivesUpWithItsContext(t *testing.T) {
	c, addr := startCluster(t, kfake.SeedTopics(1, "stuck"))
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return nil, nil, true // never answer
	})
	s, err := kafka.New(kafka.Config{Brokers: []string{addr}, Topic: "stuck", Timeout: 10 * time.Second}, event.FormatCourier, 1, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	// The caller gives up first; the write goes on (it could still land).
	wantKind(t, s.Send(ctx, sinktest.NewEvent("stuck")), retry.Retryable)
	closeCtx, cancelClose := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelClose()
	start := time.Now()
	if err := s.Close(closeCtx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close with a write stuck: %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %s, past its context", d)
	}
	// Closing the cluster (cleanup) breaks the stuck write, which ends the
	// writer's goroutines.
}

func TestSendAfterCloseIsRetryable(t *testing.T) {
	_, addr := startCluster(t, kfake.SeedTopics(1, "closed"))
	s, err := kafka.New(kafka.Config{Brokers: []string{addr}, Topic: "closed"}, event.FormatCourier, 1, "test")
	if err != nil {
		t.Fatal(err)
	}
	send(t, s, sinktest.NewEvent("before-close"))
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantKind(t, s.Send(context.Background(), sinktest.NewEvent("after-close")), retry.Retryable)
}

func TestSASL(t *testing.T) {
	const user, pass, wrong = "courier", "s3cr3t-Pa55word", "not-the-Pa55word"
	for mech, kfakeMech := range map[string]string{
		kafka.MechanismPlain:       "PLAIN",
		kafka.MechanismSCRAMSHA256: "SCRAM-SHA-256",
		kafka.MechanismSCRAMSHA512: "SCRAM-SHA-512",
	} {
		t.Run(mech, func(t *testing.T) {
			// A second, PLAIN user reads back with kafka-go's own client.
			_, addr := startCluster(t, kfake.EnableSASL(), kfake.Superuser(kfakeMech, user, pass),
				kfake.Superuser("PLAIN", "reader", "reader-pass"), kfake.SeedTopics(1, "auth"))
			ok := newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "auth",
				SASL: &kafka.SASLConfig{Mechanism: mech, Username: user, Password: pass}}, event.FormatCourier, 1)
			e := sinktest.NewEvent("authenticated")
			send(t, ok, e)
			reader := &kafkago.Dialer{Timeout: 10 * time.Second, SASLMechanism: plain.Mechanism{Username: "reader", Password: "reader-pass"}}
			if msgs := readTopicWith(t, reader, addr, "auth", 1); len(msgs) != 1 || headers(msgs[0])[kafka.HeaderEventID] != e.ID {
				t.Errorf("read back %v, want event %s", msgs, e.ID)
			}

			// A wrong password, as a real broker answers it: kfake just
			// closes the connection (which kafka-go reports as an
			// unexpected EOF, indistinguishable from a broker restart),
			// where Kafka answers SASL_AUTHENTICATION_FAILED first.
			rc, raddr := startCluster(t, kfake.EnableSASL(), kfake.Superuser(kfakeMech, user, pass), kfake.SeedTopics(1, "auth"))
			rc.ControlKey(int16(kmsg.SASLAuthenticate), func(kr kmsg.Request) (kmsg.Response, error, bool) {
				rc.KeepControl()
				resp := kr.(*kmsg.SASLAuthenticateRequest).ResponseKind().(*kmsg.SASLAuthenticateResponse)
				resp.ErrorCode = int16(kafkago.SASLAuthenticationFailed)
				msg := "Authentication failed during authentication due to invalid credentials with SASL mechanism " + kfakeMech
				resp.ErrorMessage = &msg
				return resp, nil, true
			})
			bad := newSink(t, kafka.Config{Brokers: []string{raddr}, Topic: "auth",
				SASL: &kafka.SASLConfig{Mechanism: mech, Username: user, Password: wrong}}, event.FormatCourier, 1)
			err := bad.Send(context.Background(), sinktest.NewEvent("refused"))
			wantKind(t, err, retry.Permanent)
			if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), pass) {
				t.Errorf("error %q shows a password", err)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	caFile, serverTLS := selfSignedTLS(t)
	_, addr := startCluster(t, kfake.TLS(serverTLS), kfake.SeedTopics(1, "secure"))

	s := newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "secure", TLS: &kafka.TLSConfig{CAFile: caFile}}, event.FormatCourier, 1)
	send(t, s, sinktest.NewEvent("over-tls"))

	// Without the CA the certificate is unknown: retryable, as the webhook
	// sink treats TLS failures (an operator fixes the trust, the events wait).
	untrusting := newSink(t, kafka.Config{Brokers: []string{addr}, Topic: "secure", TLS: &kafka.TLSConfig{}, Timeout: 5 * time.Second},
		event.FormatCourier, 1)
	wantKind(t, untrusting.Send(context.Background(), sinktest.NewEvent("untrusted")), retry.Retryable)

	if _, err := kafka.New(kafka.Config{Brokers: []string{addr}, Topic: "secure", TLS: &kafka.TLSConfig{CAFile: filepath.Join(t.TempDir(), "none.pem")}},
		event.FormatCourier, 1, "test"); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Errorf("a missing ca_file: got %v", err)
	}
}

// selfSignedTLS writes a self-signed certificate for 127.0.0.1 to a file
// and returns the file and a server configuration using it.
func selfSignedTLS(t *testing.T) (string, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kfake"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

func TestConfigDefaults(t *testing.T) {
	c := kafka.Config{}.WithDefaults()
	if c.Key != kafka.KeyEventKey || c.Compression != "none" || c.BatchSize != 100 || c.BatchTimeout != 2*time.Millisecond ||
		c.Timeout != 15*time.Second || c.CloudEventsMode != "structured" {
		t.Errorf("defaults: %+v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	const secret = "s3cr3t-Pa55word"
	valid := func() kafka.Config {
		return kafka.Config{Brokers: []string{"127.0.0.1:9092", "kafka-2.internal:9093"}, Topic: "courier.{type}.{level}",
			SASL: &kafka.SASLConfig{Mechanism: kafka.MechanismSCRAMSHA512, Username: "courier", Password: secret}}.WithDefaults()
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*kafka.Config)
		want   string
	}{
		{"no brokers", func(c *kafka.Config) { c.Brokers = nil }, "brokers"},
		{"broker without port", func(c *kafka.Config) { c.Brokers = []string{"kafka"} }, `broker "kafka"`},
		{"broker bad port", func(c *kafka.Config) { c.Brokers = []string{"kafka:http"} }, "port"},
		{"no topic", func(c *kafka.Config) { c.Topic = "" }, "topic is required"},
		{"unknown placeholder", func(c *kafka.Config) { c.Topic = "courier.{kind}" }, "unknown placeholder {kind}"},
		{"unclosed placeholder", func(c *kafka.Config) { c.Topic = "courier.{type" }, "'{' without '}'"},
		{"stray brace", func(c *kafka.Config) { c.Topic = "courier}.{type}" }, "'}' without '{'"},
		{"bad topic characters", func(c *kafka.Config) { c.Topic = "courier/{type}" }, "letters, digits"},
		{"bad key", func(c *kafka.Config) { c.Key = "partition" }, `key "partition"`},
		{"bad compression", func(c *kafka.Config) { c.Compression = "brotli" }, `compression "brotli"`},
		{"batch size", func(c *kafka.Config) { c.BatchSize = -1 }, "batch_size"},
		{"negative timeout", func(c *kafka.Config) { c.Timeout = -time.Second }, "timeout"},
		{"batch timeout past timeout", func(c *kafka.Config) { c.BatchTimeout = 20 * time.Second }, "batch_timeout"},
		{"cloudevents mode", func(c *kafka.Config) { c.CloudEventsMode = "batched" }, "cloudevents_mode"},
		{"cert without key", func(c *kafka.Config) { c.TLS = &kafka.TLSConfig{CertFile: "c.pem"} }, "cert_file and key_file"},
		{"sasl mechanism", func(c *kafka.Config) { c.SASL.Mechanism = "gssapi" }, `sasl.mechanism "gssapi"`},
		{"sasl user", func(c *kafka.Config) { c.SASL.Username = "" }, "sasl.username"},
		{"sasl password", func(c *kafka.Config) { c.SASL.Password = "" }, "sasl.password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.change(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			_, newErr := kafka.New(c, event.FormatCourier, 1, "test")
			for _, e := range []error{err, newErr} {
				if e != nil && strings.Contains(e.Error(), secret) {
					t.Errorf("error shows the SASL password: %v", e)
				}
			}
		})
	}
}

func TestConfigNeverPrintsThePassword(t *testing.T) {
	const secret = "s3cr3t-Pa55word"
	c := kafka.Config{Brokers: []string{"127.0.0.1:9092"}, Topic: "t",
		SASL: &kafka.SASLConfig{Mechanism: kafka.MechanismPlain, Username: "courier", Password: secret}}
	var out bytes.Buffer
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		fmt.Fprintf(&out, f+"\n", c)
		fmt.Fprintf(&out, f+"\n", *c.SASL)
	}
	slog.New(slog.NewTextHandler(&out, nil)).Info("config", "cfg", c, "sasl", c.SASL)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("config", "cfg", c, "sasl", c.SASL)
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(j)
	if strings.Contains(out.String(), secret) {
		t.Errorf("the password shows:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "courier") {
		t.Errorf("the username should still show:\n%s", out.String())
	}
}

func TestClassify(t *testing.T) {
	netErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	for _, tc := range []struct {
		name string
		err  error
		want retry.Kind
	}{
		{"leader not available", kafkago.LeaderNotAvailable, retry.Retryable},
		{"not leader", kafkago.WriteErrors{kafkago.NotLeaderForPartition}, retry.Retryable},
		{"request timed out", kafkago.WriteErrors{kafkago.RequestTimedOut}, retry.Retryable},
		{"not enough replicas", kafkago.WriteErrors{kafkago.NotEnoughReplicas}, retry.Retryable},
		{"not enough replicas after append", kafkago.WriteErrors{kafkago.NotEnoughReplicasAfterAppend}, retry.Retryable},
		{"broker not available", kafkago.BrokerNotAvailable, retry.Retryable},
		{"unknown server error", kafkago.WriteErrors{kafkago.Unknown}, retry.Retryable},
		{"throttled", kafkago.WriteErrors{kafkago.ThrottlingQuotaExceeded}, retry.Retryable},
		{"network", netErr, retry.Retryable},
		{"wrapped network", fmt.Errorf("write: %w", netErr), retry.Retryable},
		{"eof", io.EOF, retry.Retryable},
		{"unexpected eof", kafkago.WriteErrors{io.ErrUnexpectedEOF}, retry.Retryable},
		{"deadline", context.DeadlineExceeded, retry.Retryable},
		{"read deadline", kafkago.WriteErrors{&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}}, retry.Retryable},
		{"dial timeout", &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}, retry.Retryable},
		{"canceled", context.Canceled, retry.Retryable},
		{"closed writer", io.ErrClosedPipe, retry.Retryable},
		{"unknown", errors.New("something else"), retry.Retryable},
		{"partition moved", kafkago.WriteErrors{kafkago.UnknownTopicOrPartition}, retry.Retryable},
		{"topic missing", kafkago.UnknownTopicOrPartition, retry.Permanent},
		{"topic missing wrapped", fmt.Errorf("write: %w", kafkago.UnknownTopicOrPartition), retry.Permanent},
		{"too large", kafkago.WriteErrors{kafkago.MessageSizeTooLarge}, retry.Permanent},
		{"too large with message", kafkago.WriteErrors{fmt.Errorf("%w: max 1000", kafkago.MessageSizeTooLarge)}, retry.Permanent},
		{"too large client side", kafkago.MessageTooLargeError{}, retry.Permanent},
		{"record list too large", kafkago.WriteErrors{kafkago.RecordListTooLarge}, retry.Permanent},
		{"invalid topic", kafkago.InvalidTopic, retry.Permanent},
		{"topic authorization", kafkago.TopicAuthorizationFailed, retry.Permanent},
		{"cluster authorization", kafkago.WriteErrors{kafkago.ClusterAuthorizationFailed}, retry.Permanent},
		{"sasl failed", kafkago.SASLAuthenticationFailed, retry.Permanent},
		{"sasl failed wrapped", fmt.Errorf("dial: %w", fmt.Errorf("%w: bad password", kafkago.SASLAuthenticationFailed)), retry.Permanent},
		{"sasl mechanism", kafkago.UnsupportedSASLMechanism, retry.Permanent},
		{"corrupt message", kafkago.WriteErrors{kafkago.InvalidMessage}, retry.Permanent},
		{"invalid record", kafkago.WriteErrors{kafkago.InvalidRecord}, retry.Permanent},
		{"invalid timestamp", kafkago.WriteErrors{kafkago.InvalidTimestamp}, retry.Permanent},
		{"compression unsupported", kafkago.WriteErrors{kafkago.UnsupportedCompressionType}, retry.Permanent},
		{"already classified", retry.NewPermanent(io.EOF), retry.Permanent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := kafka.Classify(tc.err)
			if got.Kind != tc.want {
				t.Errorf("Classify(%v) = %s, want %s", tc.err, got.Kind, tc.want)
			}
			if !strings.Contains(got.Error(), tc.err.Error()) {
				t.Errorf("Classify(%v) lost the error: %v", tc.err, got)
			}
		})
	}
	if kafka.Classify(nil) != nil {
		t.Error("Classify(nil) should be nil")
	}
	// What kafka-go calls temporary stays retryable, but for the two codes
	// Courier deliberately overrides.
	for code := kafkago.Error(-1); code < 120; code++ {
		if !code.Temporary() || code == kafkago.InvalidMessage || code == kafkago.UnknownTopicOrPartition {
			continue
		}
		if k := kafka.Classify(kafkago.WriteErrors{code}).Kind; k != retry.Retryable {
			t.Errorf("temporary %v classified %s", code, k)
		}
	}
}

// Package kafka delivers events to Apache Kafka with segmentio/kafka-go: one
// message per event, on a topic chosen per event from a template, keyed so
// that one key stays on one partition (and so in order), with the event id,
// its type and the W3C trace context in headers, and a Courier, Gluster or
// CloudEvents (structured or binary) body.
//
// A Send returns nil only once every in-sync replica holds the message
// (acks=all; kafka-go's default would be no acknowledgement at all).
// Delivery is at least once: kafka-go has no idempotent producer, so the
// broker cannot drop a resent copy, and a write that timed out or whose
// connection broke may still have landed, so the retry the delivery loop
// makes can duplicate it. The event id travels in the "courier-event-id"
// header for consumers to de-duplicate on.
//
// The Writer never retries on its own (MaxAttempts 1): every failure goes
// back to the delivery loop, classified (see Classify), which owns backoff
// and dead-lettering. Concurrent Sends share requests: the Writer gathers
// the messages bound for one partition until batch_size of them are there
// or batch_timeout has passed, and each Send waits for its batch.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"sync/atomic"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	frsasl "github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/observability"
	"github.com/courierhq/courier/retry"
	"github.com/courierhq/courier/sinks"
)

// Headers every message carries.
const (
	HeaderEventID     = "courier-event-id"
	HeaderEventType   = "courier-event-type"
	HeaderContentType = "content-type"
	// CloudEventsHeaderPrefix starts each attribute header in CloudEvents
	// binary mode, per the CloudEvents Kafka protocol binding.
	CloudEventsHeaderPrefix = "ce_"
)

// clientID is what brokers see as client.id. It carries no version, so
// quotas and ACLs keyed on it survive upgrades.
const clientID = "courier"

// Sink writes events to a Kafka cluster.
type Sink struct {
	tracer    trace.Tracer // nil: no spans
	cfg       Config
	format    event.Format
	topic     topicTemplate
	writer    *kafkago.Writer
	transport *kafkago.Transport
}

// Option adjusts a Sink.
type Option func(*Sink)

// WithTracerProvider records a producer span per message written.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(s *Sink) { s.tracer = tp.Tracer("github.com/courierhq/courier/sinks/kafka") }
}

// New validates cfg and returns a sink. It does not contact the brokers: a
// worker must start while Kafka is down, and its Sends then fail retryable
// until Kafka is back. concurrency is how many Sends the delivery loop runs
// at once; version is unused (client.id stays "courier", see clientID).
func New(cfg Config, format event.Format, concurrency int, version string, opts ...Option) (*Sink, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	topic, _ := parseTopic(cfg.Topic)        // validated above
	codec, _ := compression(cfg.Compression) // validated above
	transport := &kafkago.Transport{ClientID: clientID}
	if cfg.TLS != nil {
		tc, err := cfg.TLS.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("kafka sink: %w", err)
		}
		transport.TLS = tc
	}
	if cfg.SASL != nil {
		transport.SASL = cfg.SASL.mechanism()
	}
	// A batch never holds more events than are sent at once, so waiting for
	// a fuller one only adds batch_timeout to every event. Capping it at
	// the concurrency lets a full set of in-flight Sends leave at once, and
	// a sequential sender (concurrency 1) not wait at all.
	batchSize := cfg.BatchSize
	if concurrency > 0 && concurrency < batchSize {
		batchSize = concurrency
	}
	w := &kafkago.Writer{
		Addr: kafkago.TCP(cfg.Brokers...),
		// Messages with one key go to one partition, where Kafka keeps them
		// in order.
		Balancer: &kafkago.Hash{},
		// No hidden retries: the delivery loop decides, with backoff that
		// survives restarts.
		MaxAttempts:  1,
		BatchSize:    batchSize,
		BatchTimeout: cfg.BatchTimeout,
		ReadTimeout:  cfg.Timeout,
		// Produce requests run on kafka-go's own context bounded by this,
		// not by the caller's: that is how a write outlives a Send that
		// gave up.
		WriteTimeout: cfg.Timeout,
		// kafka-go's zero value is RequireNone: the broker would not even
		// answer, and an event could be acked in the outbox and lost.
		RequiredAcks: kafkago.RequireAll,
		// Topics are created by whoever runs Kafka; a typo in the template
		// must not create topics nobody reads.
		AllowAutoTopicCreation: false,
		Compression:            codec,
		Transport:              transport,
		Completion:             noteBatch,
	}
	s := &Sink{cfg: cfg, format: format, topic: topic, writer: w, transport: transport}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// batchNote travels with a message through the Writer (as WriterData) and
// comes back holding how many messages shared its produce request, so a
// "too large" answer can be pinned on the batch or on the event.
type batchNote struct{ size atomic.Int64 }

// noteBatch is the Writer's Completion callback; it runs before the batch's
// waiters are released.
func noteBatch(msgs []kafkago.Message, _ error) {
	for i := range msgs {
		if n, ok := msgs[i].WriterData.(*batchNote); ok {
			n.size.Store(int64(len(msgs)))
		}
	}
}

// Send writes e as one message and waits until the in-sync replicas hold it
// (or the write failed), then classifies the outcome.
// With tracing on, the produce is a producer span whose context the
// message's headers carry.
func (s *Sink) Send(ctx context.Context, e *event.Envelope) (err error) {
	ctx, finish := observability.SendSpan(ctx, s.tracer, "send "+s.cfg.Topic, trace.SpanKindProducer,
		semconv.MessagingSystemKafka, semconv.MessagingOperationTypeSend,
		semconv.MessagingDestinationName(s.cfg.Topic), semconv.MessagingMessageID(e.ID))
	defer func() { finish(err) }()
	return s.send(ctx, e)
}

func (s *Sink) send(ctx context.Context, e *event.Envelope) error {
	msg, err := s.message(ctx, e)
	if err != nil {
		return retry.NewPermanent(err)
	}
	note := &batchNote{}
	msg.WriterData = note
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	err = s.writer.WriteMessages(ctx, msg)
	if err == nil {
		return nil
	}
	cause, produced := unwrapWrite(err)
	kind, hint := kindOf(cause, produced, note.size.Load())
	return &retry.Error{Kind: kind, Err: fmt.Errorf("write event %s to kafka topic %s: %w%s", e.ID, msg.Topic, cause, hint)}
}

// message builds the Kafka message of e.
func (s *Sink) message(ctx context.Context, e *event.Envelope) (kafkago.Message, error) {
	topic, err := s.topic.render(e)
	if err != nil {
		return kafkago.Message{}, err
	}
	var (
		body  []byte
		ct    string
		attrs map[string]string
	)
	if s.format == event.FormatCloudEvents && s.cfg.CloudEventsMode == sinks.CloudEventsBinary {
		attrs, body, ct = event.CloudEventsBinary(e)
	} else if body, ct, err = event.Encode(s.format, e); err != nil {
		return kafkago.Message{}, err
	}
	headers := make([]kafkago.Header, 0, 5+len(attrs))
	headers = append(headers,
		kafkago.Header{Key: HeaderEventID, Value: []byte(e.ID)},
		kafkago.Header{Key: HeaderEventType, Value: []byte(e.Type)},
		kafkago.Header{Key: HeaderContentType, Value: []byte(ct)},
	)
	// Sorted, so equal events make byte-identical messages.
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		headers = append(headers, kafkago.Header{Key: CloudEventsHeaderPrefix + k, Value: []byte(attrs[k])})
	}
	// A value, not the global propagator: the sink must not depend on
	// process-wide OTel setup.
	propagation.TraceContext{}.Inject(ctx, headerCarrier{&headers})
	key := e.ID
	if s.cfg.Key == KeyEventKey && e.Key != "" {
		key = e.Key
	}
	return kafkago.Message{Topic: topic, Key: []byte(key), Value: body, Headers: headers, Time: e.Time}, nil
}

// Close flushes batches still gathering, waits for the writes in flight
// (each bounded by the timeout) and closes the connections. When ctx ends
// first it returns, and the writes end on their own.
func (s *Sink) Close(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.writer.Close() }()
	select {
	case err := <-done:
		s.transport.CloseIdleConnections()
		if err != nil {
			return fmt.Errorf("close kafka writer: %w", err)
		}
		return nil
	case <-ctx.Done():
		s.transport.CloseIdleConnections()
		return fmt.Errorf("close kafka sink: %w", ctx.Err())
	}
}

// headerCarrier lets an OTel propagator write into Kafka headers.
type headerCarrier struct{ h *[]kafkago.Header }

func (c headerCarrier) Get(key string) string {
	for _, h := range *c.h {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Set replaces a header of the same key, so a message never carries two
// traceparents.
func (c headerCarrier) Set(key, value string) {
	for i := range *c.h {
		if (*c.h)[i].Key == key {
			(*c.h)[i].Value = []byte(value)
			return
		}
	}
	*c.h = append(*c.h, kafkago.Header{Key: key, Value: []byte(value)})
}

func (c headerCarrier) Keys() []string {
	keys := make([]string, len(*c.h))
	for i, h := range *c.h {
		keys[i] = h.Key
	}
	return keys
}

// permanentCodes are broker answers the same event gets again however often
// it is retried: it is refused as it is (size, format, timestamp), or the
// configuration is wrong (topic name, rights, credentials, compression,
// acks) and only an operator can fix that; the dead-letter stream keeps the
// event for replay once they did. They take precedence over kafka-go's
// Error.Temporary, which counts InvalidMessage and UnknownTopicOrPartition
// as temporary. Every other code is retryable: Temporary is not used as the
// test because it leaves out transient answers (BrokerNotAvailable,
// ReplicaNotAvailable, an unknown server error), and retrying a hopeless
// event until it is dead-lettered costs less than losing one to a
// misjudged transient failure (see retry.Classify).
var permanentCodes = map[kafkago.Error]bool{
	kafkago.InvalidMessage:                     true, // CORRUPT_MESSAGE: bad CRC or format, as encoded
	kafkago.MessageSizeTooLarge:                true, // see kindOf for batches
	kafkago.RecordListTooLarge:                 true,
	kafkago.InvalidTopic:                       true,
	kafkago.InvalidRequiredAcks:                true,
	kafkago.TopicAuthorizationFailed:           true,
	kafkago.ClusterAuthorizationFailed:         true,
	kafkago.TransactionalIDAuthorizationFailed: true,
	kafkago.InvalidTimestamp:                   true, // event time outside the topic's accepted range
	kafkago.UnsupportedSASLMechanism:           true,
	kafkago.IllegalSASLState:                   true,
	kafkago.SASLAuthenticationFailed:           true, // like an HTTP 401, which the webhook sink treats alike
	kafkago.UnsupportedVersion:                 true,
	kafkago.UnsupportedForMessageFormat:        true,
	kafkago.PolicyViolation:                    true,
	kafkago.UnsupportedCompressionType:         true,
	kafkago.InvalidRecord:                      true,
	kafkago.UnknownTopicOrPartition:            true, // from metadata only; see kindOf
}

// Classify maps an error of kafka-go's Writer.WriteMessages for one message
// (possibly wrapped, possibly a kafka.WriteErrors) to what the delivery loop
// should do: retry network failures, timeouts and transient broker answers;
// dead-letter the rest of permanentCodes.
//
// UnknownTopicOrPartition depends on where it comes from. From the
// metadata, before anything was sent, the topic does not exist; with
// auto-creation off it will not appear by itself, so it is a configuration
// error and permanent (retrying would hold an ordered stream back for
// nothing). From a produce response, the metadata named the topic and the
// broker just no longer hosts the partition (it moved), so it is
// retryable. A kafka.WriteErrors marks a produce response. kafka-go
// refreshes its metadata every few seconds (6 s at most), so events sent
// just after their topic was created can still be dead-lettered as unknown:
// replay them.
func Classify(err error) *retry.Error {
	if err == nil {
		return nil
	}
	var ce *retry.Error
	if errors.As(err, &ce) {
		return ce
	}
	cause, produced := unwrapWrite(err)
	kind, _ := kindOf(cause, produced, 0)
	return &retry.Error{Kind: kind, Err: err}
}

// unwrapWrite returns the one message's error out of a kafka.WriteErrors in
// err's chain (kafka-go wraps what the produce request got into one), and
// whether there was one.
func unwrapWrite(err error) (error, bool) {
	var werr kafkago.WriteErrors
	if errors.As(err, &werr) {
		for _, e := range werr {
			if e != nil {
				return e, true
			}
		}
	}
	return err, false
}

// kindOf classifies cause; produced says it came back from a produce
// request, batch how many messages that request held (0: unknown). The
// hint, appended to the error, tells an operator what to do.
func kindOf(cause error, produced bool, batch int64) (retry.Kind, string) {
	var code kafkago.Error
	if !errors.As(cause, &code) {
		var (
			timeout interface{ Timeout() bool }
			op      *net.OpError
		)
		switch {
		// The Send's deadline or the produce request's read deadline
		// (WriteTimeout), whichever came first: the request may have
		// reached the broker, only the answer is missing. A dial timeout
		// sent nothing.
		case errors.As(cause, &timeout) && timeout.Timeout() && !(errors.As(cause, &op) && op.Op == "dial"):
			return retry.Retryable, " (it may still land: a retry can duplicate it)"
		case errors.Is(cause, io.ErrClosedPipe):
			return retry.Retryable, " (the sink is closed)"
		}
		// Network errors, a broken connection (io.EOF, io.ErrUnexpectedEOF),
		// TLS failures (as the webhook sink treats them), cancellation.
		return retry.Retryable, ""
	}
	switch {
	case code == kafkago.UnknownTopicOrPartition && produced:
		return retry.Retryable, " (the partition moved; the next metadata refresh finds it)"
	case code == kafkago.UnknownTopicOrPartition:
		return retry.Permanent, " (the topic does not exist and auto-creation is off: create it, then replay the dead letters)"
	case (code == kafkago.MessageSizeTooLarge || code == kafkago.RecordListTooLarge) && batch > 1:
		// The broker refused the batch, not necessarily this event: sent
		// again it shares a request with other events, or none.
		return retry.Retryable, fmt.Sprintf(" (a batch of %d events was refused as too large: lower batch_size or raise the topic's max.message.bytes)", batch)
	case errors.As(cause, new(kafkago.MessageTooLargeError)):
		return retry.Permanent, " (the event alone is over the 1 MiB a produce request may carry; nothing was sent)"
	case permanentCodes[code]:
		return retry.Permanent, ""
	}
	return retry.Retryable, ""
}

// compression maps a configured codec name to kafka-go's.
func compression(name string) (kafkago.Compression, error) {
	switch name {
	case "none":
		return 0, nil
	case "gzip":
		return kafkago.Gzip, nil
	case "snappy":
		return kafkago.Snappy, nil
	case "lz4":
		return kafkago.Lz4, nil
	case "zstd":
		return kafkago.Zstd, nil
	}
	return 0, fmt.Errorf("compression %q: want none, gzip, snappy, lz4 or zstd", name)
}

// mechanism returns the SASL mechanism of the settings. SCRAM comes from
// franz-go (already a dependency, through kfake), adapted to kafka-go:
// kafka-go's own scram package would add xdg-go/scram to the module.
func (s *SASLConfig) mechanism() sasl.Mechanism {
	auth := scram.Auth{User: s.Username, Pass: s.Password}
	switch s.Mechanism {
	case MechanismSCRAMSHA256:
		return scramMechanism{auth.AsSha256Mechanism()}
	case MechanismSCRAMSHA512:
		return scramMechanism{auth.AsSha512Mechanism()}
	}
	return plain.Mechanism{Username: s.Username, Password: s.Password}
}

// scramMechanism runs a franz-go SASL mechanism as a kafka-go one. Both
// are client-first challenge/response loops; franz-go's SCRAM session ends
// with nothing left to send, which is what kafka-go expects.
type scramMechanism struct{ m frsasl.Mechanism }

func (s scramMechanism) Name() string { return s.m.Name() }

func (s scramMechanism) Start(ctx context.Context) (sasl.StateMachine, []byte, error) {
	host := ""
	if md := sasl.MetadataFromContext(ctx); md != nil {
		host = md.Host
	}
	sess, first, err := s.m.Authenticate(ctx, host)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.m.Name(), err)
	}
	return scramSession{sess}, first, nil
}

type scramSession struct{ s frsasl.Session }

// Next marks a failed exchange as an authentication failure: the server
// rejected the proof, or could not prove it knows the password.
func (s scramSession) Next(_ context.Context, challenge []byte) (bool, []byte, error) {
	done, resp, err := s.s.Challenge(challenge)
	if err != nil {
		return false, nil, fmt.Errorf("%w: %w", kafkago.SASLAuthenticationFailed, err)
	}
	return done, resp, nil
}

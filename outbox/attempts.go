package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/event"
)

// StreamAttempts carries delivery attempts to every node's event log: each
// message is a batch of attempt records from one node, so logging costs a
// few acknowledged publishes a second, never one per attempt. It is a file
// stream, replicated like the outbox, and keeps a batch for a bounded time
// and size: long enough for a node that was down to read what it missed.
const StreamAttempts = "COURIER_ATTEMPTS"

const subjectAttempts = "courier.attempts."

// SubjectLogOps carries archive and delete requests in the attempts stream,
// in order with the attempts, so every node's log applies them.
const SubjectLogOps = "courier.logops"

// AttemptsSubjects are the subjects of the attempts stream.
func AttemptsSubjects() []string { return []string{subjectAttempts + ">", SubjectLogOps} }

// Attempt is one delivery attempt of one event to one sink.
type Attempt = event.Attempt

// EnsureAttemptsStream creates or updates the attempts stream.
func EnsureAttemptsStream(ctx context.Context, js jetstream.JetStream, maxAge time.Duration, maxBytes int64, replicas int) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamAttempts,
		Description: "Courier attempts: batches of delivery attempt records, on their way to every node's event log",
		Subjects:    AttemptsSubjects(),
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld, // history: the oldest batches make room
		MaxAge:      maxAge,
		MaxBytes:    maxBytes,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return streamSetupError(StreamAttempts, "outbox.attempt_log_max_bytes", maxBytes, err)
	}
	return nil
}

// DecodeAttempts reads one batch from the attempts stream.
func DecodeAttempts(data []byte) ([]Attempt, error) {
	var out []Attempt
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("decode attempts batch: %w", err)
	}
	return out, nil
}

// Batching bounds of an AttemptLog.
const (
	attemptFlushEvery = 200 * time.Millisecond
	attemptBatchMax   = 500
	attemptBatchBytes = 256 << 10
	// attemptBuffered caps what waits while the stream cannot take a
	// batch (no quorum, say); past it records are dropped and counted.
	attemptBuffered = 100_000
)

// AttemptLog gathers a node's attempt records and publishes them in
// batches. Record never blocks a delivery: losing a record loses no event.
type AttemptLog struct {
	js      jetstream.JetStream
	subject string
	log     *slog.Logger

	mu      sync.Mutex
	buf     []Attempt
	wake    chan struct{}
	dropped atomic.Int64
}

// NewAttemptLog returns the attempt log of one node; Run publishes what
// Record gathers.
func NewAttemptLog(js jetstream.JetStream, node string, log *slog.Logger) *AttemptLog {
	return &AttemptLog{js: js, subject: subjectAttempts + subjectToken(node), log: log, wake: make(chan struct{}, 1)}
}

// Record queues an attempt for the next batch.
func (l *AttemptLog) Record(a Attempt) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) >= attemptBuffered {
		l.dropped.Add(1)
		return fmt.Errorf("attempt of %s not logged: %d records wait for the attempts stream", a.EventID, len(l.buf))
	}
	l.buf = append(l.buf, a)
	if len(l.buf) == attemptBatchMax {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// Dropped counts the records Record refused.
func (l *AttemptLog) Dropped() int64 { return l.dropped.Load() }

// Run publishes batches until ctx ends, then publishes what is left.
func (l *AttemptLog) Run(ctx context.Context) {
	tick := time.NewTicker(attemptFlushEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := l.Flush(fctx); err != nil {
				l.log.Warn("attempt records not logged at shutdown", "err", err)
			}
			cancel()
			return
		case <-tick.C:
		case <-l.wake:
		}
		if err := l.Flush(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("publish attempt records; will try again", "err", err)
		}
	}
}

// Flush publishes every queued record, in batches, and waits for the
// stream's acknowledgements. Records of a batch that failed stay queued.
func (l *AttemptLog) Flush(ctx context.Context) error {
	for {
		l.mu.Lock()
		n := min(len(l.buf), attemptBatchMax)
		batch := l.buf[:n:n]
		l.mu.Unlock()
		if n == 0 {
			return nil
		}
		sent, err := l.publish(ctx, batch)
		l.mu.Lock()
		l.buf = append(l.buf[:0:0], l.buf[sent:]...)
		l.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// publish sends batch as one or more messages of at most attemptBatchBytes
// and returns how many records were stored.
func (l *AttemptLog) publish(ctx context.Context, batch []Attempt) (int, error) {
	data, err := json.Marshal(batch)
	if err != nil {
		return len(batch), fmt.Errorf("encode attempts: %w", err) // never stored: drop
	}
	if len(data) > attemptBatchBytes && len(batch) > 1 {
		half := len(batch) / 2
		sent, err := l.publish(ctx, batch[:half])
		if err != nil {
			return sent, err
		}
		more, err := l.publish(ctx, batch[half:])
		return sent + more, err
	}
	if _, err := l.js.Publish(ctx, l.subject, data); err != nil {
		return 0, fmt.Errorf("publish %d attempt records: %w", len(batch), err)
	}
	return len(batch), nil
}

// subjectToken keeps a node id usable as one subject token.
func subjectToken(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '.' || c == '*' || c == '>' || c == ' ' || c < 0x20 {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamAttempts is the attempt log: one record per delivery attempt, so an
// operator can see why an event's delivery failed. It is kept in memory
// (a record per attempt must not cost an fsync each), for a bounded time and
// size: a restart of the node's server clears it.
const StreamAttempts = "COURIER_ATTEMPTS"

const subjectAttempts = "courier.attempts."

// Attempt is one delivery attempt of one event to one sink.
type Attempt struct {
	EventID  string        `json:"event_id"`
	Sink     string        `json:"sink"`
	Attempt  int           `json:"attempt"`
	Outcome  string        `json:"outcome"`
	Status   int           `json:"status,omitempty"`
	Duration time.Duration `json:"duration"`
	Error    string        `json:"error,omitempty"`
	Response string        `json:"response,omitempty"`
	Node     string        `json:"node,omitempty"`
	At       time.Time     `json:"at"`
}

// AttemptLog records and reads attempts.
type AttemptLog struct {
	js jetstream.JetStream
	nc *nats.Conn
}

// EnsureAttemptLog creates or updates the attempt log stream.
func EnsureAttemptLog(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, maxAge time.Duration, maxBytes int64, replicas int) (*AttemptLog, error) {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamAttempts,
		Description: "Courier attempt log: the outcome of every delivery attempt, for a bounded time",
		Subjects:    []string{subjectAttempts + ">"},
		Storage:     jetstream.MemoryStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld, // a log: the oldest records make room
		MaxAge:      maxAge,
		MaxBytes:    maxBytes,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("set up stream %s: %w", StreamAttempts, err)
	}
	return &AttemptLog{js: js, nc: nc}, nil
}

// NewAttemptLog reads an existing attempt log (for operator commands).
func NewAttemptLog(js jetstream.JetStream) *AttemptLog { return &AttemptLog{js: js} }

// Record stores an attempt as a plain publish, with no acknowledgement at
// all: the log must not slow delivery down (asking for acknowledgements
// cost a quarter of the end-to-end throughput), and losing a record loses
// no event.
func (l *AttemptLog) Record(a Attempt) error {
	data, err := json.Marshal(&a)
	if err != nil {
		return fmt.Errorf("encode attempt: %w", err)
	}
	if err := l.nc.Publish(subjectAttempts+a.EventID, data); err != nil {
		return fmt.Errorf("record attempt of %s: %w", a.EventID, err)
	}
	return nil
}

// Of returns the recorded attempts of one event, on every sink, oldest
// first.
func (l *AttemptLog) Of(ctx context.Context, eventID string) ([]Attempt, error) {
	var out []Attempt
	err := readSubject(ctx, l.js, StreamAttempts, subjectAttempts+eventID, func(m jetstream.Msg) (bool, error) {
		var a Attempt
		if err := json.Unmarshal(m.Data(), &a); err != nil {
			return false, fmt.Errorf("decode attempt: %w", err)
		}
		out = append(out, a)
		return true, nil
	})
	return out, err
}

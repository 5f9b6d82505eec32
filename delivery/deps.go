package delivery

import (
	"context"

	"github.com/nats-io/nats.go"

	"github.com/courierhq/courier/outbox"
)

// What the loop needs besides the sink and the consumer, each as small as
// what it calls: the outbox's types implement them (named beside each),
// and the loop's tests can watch what it asked for.

// DeadLetterStore keeps the events the loop gave up on (outbox.DeadLetters).
type DeadLetterStore interface {
	Put(ctx context.Context, dl outbox.DeadLetter) error
}

// Requeuer stores an event again at the end of the outbox for one sink, to
// wait there for a later retry (outbox.Retries).
type Requeuer interface {
	Requeue(ctx context.Context, sink, eventType string, data []byte, hdr nats.Header, dedupID string) error
}

// StateStore shares a sink's enabled or disabled state between nodes
// (outbox.SinkStates).
type StateStore interface {
	Watch(ctx context.Context, sink string, fn func(outbox.SinkState)) error
	Put(ctx context.Context, sink string, st outbox.SinkState) error
}

// AttemptRecorder keeps each attempt's outcome for the event log
// (outbox.AttemptLog).
type AttemptRecorder interface {
	Record(a outbox.Attempt) error
}

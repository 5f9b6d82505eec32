package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names and subjects: the one place that says how the outbox is laid
// out in JetStream.
const (
	StreamEvents     = "COURIER_OUTBOX"
	StreamDeadLetter = "COURIER_DLQ"

	subjectEvents     = "courier.events."
	subjectReplay     = "courier.replay."
	subjectDeadLetter = "courier.dlq."
)

// EventSubject is where an event of the given type is stored.
func EventSubject(eventType string) string { return subjectEvents + eventType }

// IsEventSubject tells an event as emitted from a replay of it.
func IsEventSubject(subject string) bool { return strings.HasPrefix(subject, subjectEvents) }

// ForSink tells whether a sink is to deliver the outbox message stored on
// subject: every event, and of the retries and replays only those
// addressed to that sink. A sink's consumer reads the whole outbox and
// acknowledges the rest unseen, because filtering by subject costs
// JetStream a walk over every event type in a block for each message it
// hands out (BenchmarkConsumeTypes: with 100 types, about 2x the cost of
// fetching and acknowledging an event unfiltered).
func ForSink(subject, sink string) bool {
	rest, ok := strings.CutPrefix(subject, subjectReplay)
	if !ok {
		return true
	}
	to, _, _ := strings.Cut(rest, ".") // sink names have no dots
	return to == sink
}

func replaySubject(sink, eventType string) string { return subjectReplay + sink + "." + eventType }

func deadLetterSubject(sink string) string { return subjectDeadLetter + sink }

// Limits bound the outbox.
type Limits struct {
	// MaxAge is how long an undelivered event is kept.
	MaxAge time.Duration
	// MaxBytes caps the undelivered events' total size; past it new events
	// are rejected (ErrFull), never old ones dropped.
	MaxBytes int64
	// MaxEventSize caps one stored event.
	MaxEventSize int32
	// Duplicates is the window in which a re-emitted id is stored once.
	Duplicates time.Duration
	// DeadLetterMaxAge is how long dead letters are kept.
	DeadLetterMaxAge time.Duration
	// Replicas is the stream replication factor (1 on a single node).
	Replicas int
}

// EnsureStreams creates or updates the outbox and dead-letter streams.
//
// The outbox keeps an event until every sink's consumer has acknowledged it
// (Trim removes those), so max_bytes bounds the undelivered backlog rather
// than history, and DiscardNew makes a full outbox refuse new events (the
// producer gets an error) instead of silently discarding old ones.
//
// It is a limits-retention stream trimmed in bulk rather than an
// interest-retention stream: with interest retention every acknowledgement
// deletes one message, which with fsync-before-ack costs one fsync per
// delivered event (measured: end-to-end throughput fell from ~5k to ~1.9k
// events/s on a 2-core machine).
func EnsureStreams(ctx context.Context, js jetstream.JetStream, l Limits) error {
	replicas := max(l.Replicas, 1)
	outbox := jetstream.StreamConfig{
		Name:               StreamEvents,
		Description:        "Courier outbox: events until every sink confirmed them",
		Subjects:           []string{subjectEvents + ">", subjectReplay + ">"},
		Retention:          jetstream.LimitsPolicy,
		Discard:            jetstream.DiscardNew,
		Storage:            jetstream.FileStorage,
		MaxAge:             l.MaxAge,
		MaxBytes:           orUnlimited(l.MaxBytes),
		MaxMsgSize:         l.MaxEventSize,
		Duplicates:         l.Duplicates,
		Replicas:           replicas,
		AllowAtomicPublish: true, // group commit: one fsync per batch
	}
	if _, err := js.CreateOrUpdateStream(ctx, outbox); err != nil {
		return streamSetupError(StreamEvents, "outbox.max_bytes", l.MaxBytes, err)
	}
	dlq := jetstream.StreamConfig{
		Name:        StreamDeadLetter,
		Description: "Courier dead letters: events a sink refused or never confirmed",
		Subjects:    []string{subjectDeadLetter + ">"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		Storage:     jetstream.FileStorage,
		MaxAge:      l.DeadLetterMaxAge,
		Duplicates:  l.Duplicates,
		Replicas:    replicas,
	}
	if _, err := js.CreateOrUpdateStream(ctx, dlq); err != nil {
		return fmt.Errorf("set up stream %s: %w", StreamDeadLetter, err)
	}
	return nil
}

// errCodeStorageExceeded is JetStream's answer to a stream whose max_bytes
// is more than the server may store (nats-server's
// JSStorageResourcesExceededErr); nats.go has no name for it.
const errCodeStorageExceeded jetstream.ErrorCode = 10047

// streamSetupError says what to change when a stream's size limit does
// not fit the space JetStream may use, instead of only its error code.
func streamSetupError(stream, setting string, maxBytes int64, err error) error {
	var api *jetstream.APIError
	if errors.As(err, &api) && api.ErrorCode == errCodeStorageExceeded {
		return fmt.Errorf("set up stream %s: %s (%d MiB), with the outbox's other streams, is more than data_dir's filesystem holds: "+
			"lower %s, or give data_dir more room: %w",
			stream, setting, maxBytes>>20, setting, err)
	}
	return fmt.Errorf("set up stream %s: %w", stream, err)
}

func orUnlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// mapAPIError turns JetStream's answers into the outbox's sentinel errors.
func mapAPIError(err error) error {
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("%w: %v", ErrNoStream, err)
	case errors.As(err, &apiErr):
		return apiError(apiErr.Code, uint16(apiErr.ErrorCode), apiErr.Description)
	}
	return err
}

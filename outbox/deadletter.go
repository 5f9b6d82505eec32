package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/event"
)

// DeadLetter is an event a sink refused or never confirmed, with why.
type DeadLetter struct {
	// Seq is the dead letter's position in the dead-letter stream; replay
	// and listing refer to it.
	Seq uint64 `json:"seq,omitempty"`
	// OutboxSeq is the event's position in the outbox stream. It keys the
	// dead letter: a crash between storing it and settling the event stores
	// it once, while a replayed event (a new outbox position) that fails
	// again gets a dead letter of its own.
	OutboxSeq    uint64    `json:"outbox_seq"`
	Sink         string    `json:"sink"`
	Reason       string    `json:"reason"`
	Attempts     int       `json:"attempts"`
	LastStatus   int       `json:"last_status,omitempty"`
	LastError    string    `json:"last_error,omitempty"`
	LastResponse string    `json:"last_response,omitempty"`
	DeadAt       time.Time `json:"dead_at"`
	Node         string    `json:"node,omitempty"`
	// Trace is the event's W3C trace context, so a replay continues the
	// event's trace.
	Trace map[string]string `json:"trace,omitempty"`
	Event event.Envelope    `json:"event"`
}

// ConsumerPrefix starts the name of each sink's durable consumer.
const ConsumerPrefix = "sink-"

var sinkName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ReplayedHeader marks an event put back from the dead letters.
const ReplayedHeader = "Courier-Replayed"

// DeadLetters reads and writes the dead-letter stream.
type DeadLetters struct {
	js jetstream.JetStream
}

// NewDeadLetters returns access to the dead-letter stream over js.
func NewDeadLetters(js jetstream.JetStream) *DeadLetters { return &DeadLetters{js: js} }

// Put stores a dead letter and returns once JetStream acknowledged it, so
// the caller may then acknowledge the original. The message id makes a
// repeated Put (after a crash between the two steps) a no-op.
func (d *DeadLetters) Put(ctx context.Context, dl DeadLetter) error {
	data, err := json.Marshal(&dl)
	if err != nil {
		return fmt.Errorf("encode dead letter for %s: %w", dl.Event.ID, err)
	}
	m := nats.NewMsg(deadLetterSubject(dl.Sink))
	m.Data = data
	m.Header.Set(nats.MsgIdHdr, "dlq:"+dl.Sink+":"+strconv.FormatUint(dl.OutboxSeq, 10))
	if _, err := d.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("store dead letter for event %s: %w", dl.Event.ID, mapAPIError(err))
	}
	return nil
}

// List returns the sink's dead letters, oldest first, at most limit (0: all).
func (d *DeadLetters) List(ctx context.Context, sink string, limit int) ([]DeadLetter, error) {
	var out []DeadLetter
	err := d.each(ctx, sink, func(dl DeadLetter) bool {
		out = append(out, dl)
		return limit <= 0 || len(out) < limit
	})
	return out, err
}

// Count returns how many dead letters the sink has.
func (d *DeadLetters) Count(ctx context.Context, sink string) (uint64, error) {
	s, err := d.js.Stream(ctx, StreamDeadLetter)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", StreamDeadLetter, mapAPIError(err))
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(deadLetterSubject(sink)))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", StreamDeadLetter, mapAPIError(err))
	}
	return info.State.Subjects[deadLetterSubject(sink)], nil
}

// Replay puts the sink's dead letters back into the outbox addressed to that
// sink alone, then removes them from the dead-letter stream. With ids empty
// it replays all of them; otherwise only those whose event id is listed.
// It returns how many were replayed.
func (d *DeadLetters) Replay(ctx context.Context, sink string, ids []string) (int, error) {
	if !sinkName.MatchString(sink) {
		return 0, fmt.Errorf("sink name %q: use letters, digits, '_' or '-'", sink)
	}
	// Without the sink's consumer, a replayed event would match no one and
	// be trimmed away: the dead letter would be lost, not replayed.
	if _, err := d.js.Consumer(ctx, StreamEvents, ConsumerPrefix+sink); err != nil {
		return 0, fmt.Errorf("sink %s has no consumer in the outbox (is it configured on a running worker?): %w", sink, mapAPIError(err))
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var picked []DeadLetter
	err := d.each(ctx, sink, func(dl DeadLetter) bool {
		if len(want) == 0 || want[dl.Event.ID] {
			picked = append(picked, dl)
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	stream, err := d.js.Stream(ctx, StreamDeadLetter)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", StreamDeadLetter, mapAPIError(err))
	}
	for i, dl := range picked {
		data, err := json.Marshal(&dl.Event)
		if err != nil {
			return i, fmt.Errorf("encode event %s: %w", dl.Event.ID, err)
		}
		m := nats.NewMsg(replaySubject(sink, dl.Event.Type))
		m.Data = data
		// Keyed by the dead letter, so replaying it twice stores it once.
		m.Header.Set(nats.MsgIdHdr, "replay:"+strconv.FormatUint(dl.Seq, 10))
		m.Header.Set(ReplayedHeader, strconv.FormatUint(dl.Seq, 10))
		for k, v := range dl.Trace {
			m.Header.Set(k, v)
		}
		if _, err := d.js.PublishMsg(ctx, m); err != nil {
			return i, fmt.Errorf("replay event %s: %w", dl.Event.ID, mapAPIError(err))
		}
		if err := stream.DeleteMsg(ctx, dl.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return i + 1, fmt.Errorf("remove replayed dead letter %d: %w", dl.Seq, err)
		}
	}
	return len(picked), nil
}

// each visits the sink's dead letters in order until fn returns false.
func (d *DeadLetters) each(ctx context.Context, sink string, fn func(DeadLetter) bool) error {
	return readSubject(ctx, d.js, StreamDeadLetter, deadLetterSubject(sink), func(m jetstream.Msg) (bool, error) {
		var dl DeadLetter
		if err := json.Unmarshal(m.Data(), &dl); err != nil {
			return false, fmt.Errorf("decode dead letter: %w", err)
		}
		if md, err := m.Metadata(); err == nil {
			dl.Seq = md.Sequence.Stream
		}
		return fn(dl), nil
	})
}

// readSubject visits, in order, the messages stored on one subject of a
// stream, until fn returns false or an error.
func readSubject(ctx context.Context, js jetstream.JetStream, stream, subject string, fn func(jetstream.Msg) (bool, error)) error {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, mapAPIError(err))
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, mapAPIError(err))
	}
	for remaining := info.NumPending; remaining > 0; {
		batch, err := cons.Fetch(int(min(remaining, 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			remaining--
			more, err := fn(m)
			if err != nil || !more {
				return err
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		if got == 0 {
			return fmt.Errorf("read %s: %d messages announced but none arrived", stream, remaining)
		}
	}
	return nil
}

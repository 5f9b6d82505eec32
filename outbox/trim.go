package outbox

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LogConsumer is the name of the event log's consumer on the outbox: one per
// node ("log-<node>") when each node keeps its own log, one for all
// ("log") when they share a database.
func LogConsumer(node string, shared bool) string {
	if shared {
		return "log"
	}
	return "log-" + subjectToken(node)
}

func isLogConsumer(name string) bool { return name == "log" || strings.HasPrefix(name, "log-") }

// LogBound is how far an event log's consumer may fall behind and still
// hold events in the outbox. Zero fields do not bound.
type LogBound struct {
	MaxLag   time.Duration // age of the oldest event it has not logged
	MaxBytes int64         // outbox bytes at and above that event, estimated
}

// TrimResult says what Trim did.
type TrimResult struct {
	Trimmed uint64
	// Behind names the event log consumers that fell past the bound and
	// no longer hold the outbox: their logs miss what was trimmed.
	Behind []string
}

// Trim removes from the outbox the events every consumer (one per sink, and
// the event logs within bound) has acknowledged: everything below the lowest
// acknowledgement floor. With no consumer it removes nothing, so events wait
// for a sink rather than vanish. Trimming is idempotent, so every node may
// run it.
func Trim(ctx context.Context, js jetstream.JetStream, bound LogBound) (TrimResult, error) {
	var res TrimResult
	stream, err := js.Stream(ctx, StreamEvents)
	if err != nil {
		return res, fmt.Errorf("open %s: %w", StreamEvents, mapAPIError(err))
	}
	state := stream.CachedInfo().State
	var (
		floor uint64
		found bool
	)
	consumers := stream.ListConsumers(ctx)
	for info := range consumers.Info() {
		f := info.AckFloor.Stream
		if isLogConsumer(info.Name) && f+1 >= state.FirstSeq && f < state.LastSeq && tooFarBehind(ctx, stream, state, f, bound) {
			res.Behind = append(res.Behind, info.Name)
			continue
		}
		if !found || f < floor {
			floor, found = f, true
		}
	}
	if err := consumers.Err(); err != nil {
		return res, fmt.Errorf("list consumers of %s: %w", StreamEvents, err)
	}
	if !found || floor < state.FirstSeq {
		return res, nil
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(floor+1)); err != nil {
		return res, fmt.Errorf("trim %s below %d: %w", StreamEvents, floor+1, err)
	}
	res.Trimmed = floor + 1 - state.FirstSeq
	return res, nil
}

// tooFarBehind tells whether a log consumer whose floor is floor is past
// the bound.
func tooFarBehind(ctx context.Context, stream jetstream.Stream, state jetstream.StreamState, floor uint64, b LogBound) bool {
	if b.MaxBytes > 0 && state.Msgs > 0 {
		held := float64(state.LastSeq-floor) / float64(state.LastSeq-state.FirstSeq+1)
		if int64(held*float64(state.Bytes)) > b.MaxBytes {
			return true
		}
	}
	if b.MaxLag > 0 {
		next := max(floor+1, state.FirstSeq)
		msg, err := stream.GetMsg(ctx, next)
		if err != nil {
			return false // deleted or not there: hold, and look again next time
		}
		return time.Since(msg.Time) > b.MaxLag
	}
	return false
}

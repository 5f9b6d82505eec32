package outbox

import (
	"context"
	"errors"
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

// AttemptsLogConsumer is the name of the event log's consumer on the
// attempts stream: "log-attempts-<node>", or "log-attempts" when the nodes
// share a database.
func AttemptsLogConsumer(node string, shared bool) string {
	if shared {
		return "log-attempts"
	}
	return "log-attempts-" + node
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
	infos, err := consumerInfos(ctx, stream)
	if err != nil {
		return res, err
	}
	for _, info := range infos {
		f := info.AckFloor.Stream
		if isLogConsumer(info.Name) && f+1 >= state.FirstSeq && f < state.LastSeq && tooFarBehind(ctx, stream, state, f, bound) {
			res.Behind = append(res.Behind, info.Name)
			continue
		}
		if !found || f < floor {
			floor, found = f, true
		}
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

// consumerInfos reads every consumer of stream, or fails. It does not use
// the consumer list API: in a cluster whose node is down or electing, the
// server leaves out of that list the consumers whose leader did not answer
// in time ("Did not receive all consumer info results"), nats.go does not
// say so, and a trim without them removed events a restarted node's log
// had not read yet. The names come from the cluster's assignments, which
// are complete; each consumer's state is then asked for on its own.
func consumerInfos(ctx context.Context, stream jetstream.Stream) ([]*jetstream.ConsumerInfo, error) {
	names := stream.ConsumerNames(ctx)
	var infos []*jetstream.ConsumerInfo
	for name := range names.Name() {
		c, err := stream.Consumer(ctx, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue // removed since it was listed
		}
		if err != nil {
			return nil, fmt.Errorf("read consumer %s of %s: %w", name, StreamEvents, mapAPIError(err))
		}
		infos = append(infos, c.CachedInfo())
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("list consumers of %s: %w", StreamEvents, err)
	}
	return infos, nil
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

package outbox

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Trim removes from the outbox the events every consumer (one per sink) has
// acknowledged: everything below the lowest acknowledgement floor. With no
// consumer it removes nothing, so events wait for a sink rather than vanish.
// It returns how many stream sequences it trimmed. Trimming is idempotent, so every
// node may run it.
func Trim(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	stream, err := js.Stream(ctx, StreamEvents)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", StreamEvents, mapAPIError(err))
	}
	var (
		floor uint64
		found bool
	)
	consumers := stream.ListConsumers(ctx)
	for info := range consumers.Info() {
		if !found || info.AckFloor.Stream < floor {
			floor, found = info.AckFloor.Stream, true
		}
	}
	if err := consumers.Err(); err != nil {
		return 0, fmt.Errorf("list consumers of %s: %w", StreamEvents, err)
	}
	first := stream.CachedInfo().State.FirstSeq
	if !found || floor < first {
		return 0, nil
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(floor+1)); err != nil {
		return 0, fmt.Errorf("trim %s below %d: %w", StreamEvents, floor+1, err)
	}
	return floor + 1 - first, nil
}

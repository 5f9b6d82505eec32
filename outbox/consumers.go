package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ConsumerName is the durable consumer that holds a sink's position.
func ConsumerName(sink string) string { return ConsumerPrefix + sink }

// EnsureConsumer creates the sink's durable consumer, or updates it and keeps
// its position. A new consumer starts with events stored from now on.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, sink string, ackWait time.Duration, maxAckPending int) (jetstream.Consumer, error) {
	return ensureConsumer(ctx, js, sink, ackWait, maxAckPending, false)
}

// EnsureStartupConsumer is EnsureConsumer for the sinks a node's
// configuration file defines at start. On a new outbox (created within
// newStreamWindow) a new consumer starts at the beginning: in a cluster,
// producers can reach the outbox as soon as any node created the stream,
// before every node created the consumers of its file's sinks.
func EnsureStartupConsumer(ctx context.Context, js jetstream.JetStream, sink string, ackWait time.Duration, maxAckPending int) (jetstream.Consumer, error) {
	return ensureConsumer(ctx, js, sink, ackWait, maxAckPending, true)
}

func ensureConsumer(ctx context.Context, js jetstream.JetStream, sink string, ackWait time.Duration, maxAckPending int, startup bool) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:       ConsumerName(sink),
		Description:   "Courier delivery to sink " + sink,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		// The delivery loop decides when to give up; JetStream must never
		// drop an event on its own.
		MaxDeliver:    -1,
		MaxAckPending: maxAckPending,
	}
	stream, err := js.Stream(ctx, StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("set up consumer for sink %s: open %s: %w", sink, StreamEvents, err)
	}
	existing, err := stream.Consumer(ctx, cfg.Durable)
	switch {
	case err == nil:
		// The start position cannot change once set.
		cfg.DeliverPolicy = existing.CachedInfo().Config.DeliverPolicy
		cfg.OptStartSeq = existing.CachedInfo().Config.OptStartSeq
		cfg.OptStartTime = existing.CachedInfo().Config.OptStartTime
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		if startup && time.Since(stream.CachedInfo().Created) < newStreamWindow {
			cfg.DeliverPolicy = jetstream.DeliverAllPolicy
		}
	default:
		return nil, fmt.Errorf("set up consumer for sink %s: %w", sink, err)
	}
	c, err := stream.CreateOrUpdateConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("set up consumer for sink %s: %w", sink, err)
	}
	return c, nil
}

// newStreamWindow is how young an outbox counts as new.
const newStreamWindow = time.Minute

// RemoveStaleConsumers deletes the consumers of sinks no longer configured,
// so they stop holding events in the outbox. It returns the removed sinks
// with the number of events each still had pending.
func RemoveStaleConsumers(ctx context.Context, js jetstream.JetStream, keep map[string]bool) (map[string]uint64, error) {
	stream, err := js.Stream(ctx, StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", StreamEvents, err)
	}
	removed := map[string]uint64{}
	infos := stream.ListConsumers(ctx)
	var stale []*jetstream.ConsumerInfo
	for info := range infos.Info() {
		sink, ok := strings.CutPrefix(info.Name, ConsumerPrefix)
		// A young consumer may belong to a sink being added right now,
		// whose definition is stored just after its consumer.
		if ok && !keep[sink] && time.Since(info.Created) > newStreamWindow {
			stale = append(stale, info)
		}
	}
	if err := infos.Err(); err != nil {
		return nil, fmt.Errorf("list consumers: %w", err)
	}
	for _, info := range stale {
		if err := stream.DeleteConsumer(ctx, info.Name); err != nil {
			return removed, fmt.Errorf("remove consumer %s: %w", info.Name, err)
		}
		removed[strings.TrimPrefix(info.Name, ConsumerPrefix)] = info.NumPending + uint64(info.NumAckPending)
	}
	return removed, nil
}

// RemoveConsumer deletes a sink's consumer and returns how many events it
// still had to deliver, and whether it existed. A consumer already gone is
// not an error.
func RemoveConsumer(ctx context.Context, js jetstream.JetStream, sink string) (undelivered uint64, existed bool, err error) {
	c, err := js.Consumer(ctx, StreamEvents, ConsumerName(sink))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("open consumer of sink %s: %w", sink, err)
	}
	info := c.CachedInfo()
	if err := js.DeleteConsumer(ctx, StreamEvents, ConsumerName(sink)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, true, fmt.Errorf("remove consumer of sink %s: %w", sink, err)
	}
	return info.NumPending + uint64(info.NumAckPending), true, nil
}

package delivery

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/outbox"
)

const consumerPrefix = outbox.ConsumerPrefix

// ConsumerName is the durable consumer that holds a sink's position.
func ConsumerName(sink string) string { return consumerPrefix + sink }

// EnsureConsumer creates the sink's durable consumer, or updates it and keeps
// its position. A new consumer starts with events stored from now on.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, sink string, ackWait time.Duration, maxAckPending int) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:        ConsumerName(sink),
		Description:    "Courier delivery to sink " + sink,
		FilterSubjects: outbox.ConsumerSubjects(sink),
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        ackWait,
		// The delivery loop decides when to give up; JetStream must never
		// drop an event on its own.
		MaxDeliver:    -1,
		MaxAckPending: maxAckPending,
	}
	c, err := js.CreateOrUpdateConsumer(ctx, outbox.StreamEvents, cfg)
	if err != nil {
		return nil, fmt.Errorf("set up consumer for sink %s: %w", sink, err)
	}
	return c, nil
}

// RemoveStaleConsumers deletes the consumers of sinks no longer configured,
// so they stop holding events in the outbox. It returns the removed sinks
// with the number of events each still had pending.
func RemoveStaleConsumers(ctx context.Context, js jetstream.JetStream, keep map[string]bool) (map[string]uint64, error) {
	stream, err := js.Stream(ctx, outbox.StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", outbox.StreamEvents, err)
	}
	removed := map[string]uint64{}
	infos := stream.ListConsumers(ctx)
	var stale []*jetstream.ConsumerInfo
	for info := range infos.Info() {
		sink, ok := strings.CutPrefix(info.Name, consumerPrefix)
		if ok && !keep[sink] {
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
		removed[strings.TrimPrefix(info.Name, consumerPrefix)] = info.NumPending + uint64(info.NumAckPending)
	}
	return removed, nil
}

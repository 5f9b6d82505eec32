package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketSinkState holds each sink's operational state, replicated with the
// outbox so every node sees an operator's change.
const BucketSinkState = "COURIER_SINK_STATE"

// SinkState is a sink's operational state.
type SinkState struct {
	Disabled bool      `json:"disabled"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
	Node     string    `json:"node,omitempty"`
}

// SinkStates reads and writes sink states.
type SinkStates struct{ kv jetstream.KeyValue }

// EnsureSinkStates creates or opens the sink state bucket.
func EnsureSinkStates(ctx context.Context, js jetstream.JetStream, replicas int) (*SinkStates, error) {
	kv, err := ensureBucket(ctx, js, BucketSinkState, "Courier sink states (disabled by 410 Gone, re-enabled by operators)", replicas)
	return &SinkStates{kv: kv}, err
}

// OpenSinkStates opens the bucket (for the operator commands).
func OpenSinkStates(ctx context.Context, js jetstream.JetStream) (*SinkStates, error) {
	kv, err := openBucket(ctx, js, BucketSinkState)
	return &SinkStates{kv: kv}, err
}

// ensureBucket creates or updates a file-backed KV bucket beside the outbox.
func ensureBucket(ctx context.Context, js jetstream.JetStream, name, description string, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: name, Description: description,
		Storage: jetstream.FileStorage, Replicas: max(replicas, 1), History: 5,
	})
	if err != nil {
		return nil, fmt.Errorf("set up bucket %s: %w", name, err)
	}
	return kv, nil
}

// openBucket opens an existing KV bucket, for the operator commands.
func openBucket(ctx context.Context, js jetstream.JetStream, name string) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", name, mapAPIError(err))
	}
	return kv, nil
}

// Get returns the sink's state (enabled when none was ever stored).
func (s *SinkStates) Get(ctx context.Context, sink string) (SinkState, error) {
	e, err := s.kv.Get(ctx, sink)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return SinkState{}, nil
	}
	if err != nil {
		return SinkState{}, fmt.Errorf("read state of sink %s: %w", sink, err)
	}
	return decodeState(e.Value())
}

// Put stores the sink's state.
func (s *SinkStates) Put(ctx context.Context, sink string, st SinkState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state of sink %s: %w", sink, err)
	}
	if _, err := s.kv.Put(ctx, sink, b); err != nil {
		return fmt.Errorf("store state of sink %s: %w", sink, err)
	}
	return nil
}

// Watch calls fn with the sink's current state and every change, until ctx
// ends.
func (s *SinkStates) Watch(ctx context.Context, sink string, fn func(SinkState)) error {
	w, err := s.kv.Watch(ctx, sink)
	if err != nil {
		return fmt.Errorf("watch state of sink %s: %w", sink, err)
	}
	go func() {
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil { // end of the initial values
					continue
				}
				st, err := decodeState(e.Value())
				if e.Operation() != jetstream.KeyValuePut {
					st = SinkState{}
				} else if err != nil {
					continue
				}
				fn(st)
			}
		}
	}()
	return nil
}

func decodeState(b []byte) (SinkState, error) {
	var st SinkState
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("decode sink state: %w", err)
	}
	return st, nil
}

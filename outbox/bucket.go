package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Buckets of the replicated registry: sink definitions and operator
// settings, which every node watches and applies live.
const (
	BucketSinks    = "COURIER_SINKS"
	BucketSettings = "COURIER_SETTINGS"
)

// Bucket is a replicated key-value bucket beside the outbox.
type Bucket struct{ kv jetstream.KeyValue }

// EnsureBucket creates or opens a bucket.
func EnsureBucket(ctx context.Context, js jetstream.JetStream, name, description string, replicas int) (*Bucket, error) {
	kv, err := ensureBucket(ctx, js, name, description, replicas)
	return &Bucket{kv: kv}, err
}

// OpenBucket opens an existing bucket.
func OpenBucket(ctx context.Context, js jetstream.JetStream, name string) (*Bucket, error) {
	kv, err := openBucket(ctx, js, name)
	return &Bucket{kv: kv}, err
}

// All returns every key's current value, read as one snapshot.
//
// The watcher behind it reads from one replica, chosen by the server, and
// a node that just rejoined the cluster serves it before its replica has
// caught up: its snapshot would lack what the others stored meanwhile
// (`worker sinks list` printed no sinks through it, and a worker starting
// there could miss a sink until its next re-read). So All first asks the
// stream's leader for its last revision, and reads on until the watcher
// has delivered that one.
func (b *Bucket) All(ctx context.Context) (map[string][]byte, error) {
	// Without a leader (right after a node was killed, until the election
	// ends) the read goes on as before: the replica's snapshot, which is
	// better than none for a node that must apply its sinks.
	last := b.lastRevision(ctx)
	w, err := b.kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("read bucket %s: %w", b.kv.Bucket(), err)
	}
	defer func() { _ = w.Stop() }()
	out := map[string][]byte{}
	var seen uint64
	sentCurrent := false
	for !sentCurrent || seen < last {
		select {
		case <-ctx.Done():
			if sentCurrent {
				return nil, fmt.Errorf("read bucket %s: the replica read has revision %d of %d: %w", b.kv.Bucket(), seen, last, ctx.Err())
			}
			return nil, fmt.Errorf("read bucket %s: %w", b.kv.Bucket(), ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("read bucket %s: watcher stopped", b.kv.Bucket())
			}
			if e == nil { // every value the replica holds was sent
				sentCurrent = true
				continue
			}
			seen = max(seen, e.Revision())
			if e.Operation() == jetstream.KeyValuePut {
				out[e.Key()] = e.Value()
			} else {
				delete(out, e.Key())
			}
		}
	}
	return out, nil
}

// leaderWait bounds how long All waits for the stream's leader to answer.
const leaderWait = 2 * time.Second

// lastRevision is the revision of the bucket's newest entry, as the
// stream's leader knows it; 0 when the bucket is empty or the leader does
// not answer within leaderWait. The newest entry is never removed by the
// bucket's history limit nor by a delete, which leaves a marker, so a
// watcher always delivers it.
func (b *Bucket) lastRevision(ctx context.Context) uint64 {
	ctx, cancel := context.WithTimeout(ctx, leaderWait)
	defer cancel()
	st, err := b.kv.Status(ctx)
	if err != nil {
		return 0
	}
	info, ok := st.(interface{ StreamInfo() *jetstream.StreamInfo })
	if !ok || info.StreamInfo() == nil || info.StreamInfo().State.Msgs == 0 {
		return 0
	}
	return info.StreamInfo().State.LastSeq
}

// Get returns a key's value; ok is false when the key has none.
func (b *Bucket) Get(ctx context.Context, key string) (value []byte, ok bool, err error) {
	e, err := b.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s from bucket %s: %w", key, b.kv.Bucket(), err)
	}
	return e.Value(), true, nil
}

// Put stores a key's value.
func (b *Bucket) Put(ctx context.Context, key string, value []byte) error {
	if _, err := b.kv.Put(ctx, key, value); err != nil {
		return fmt.Errorf("store %s in bucket %s: %w", key, b.kv.Bucket(), err)
	}
	return nil
}

// ErrKeyExists: Create found the key already set.
var ErrKeyExists = errors.New("key exists")

// Create stores a key's value only if the key has none.
func (b *Bucket) Create(ctx context.Context, key string, value []byte) error {
	if _, err := b.kv.Create(ctx, key, value); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("%w: %s in bucket %s", ErrKeyExists, key, b.kv.Bucket())
		}
		return fmt.Errorf("create %s in bucket %s: %w", key, b.kv.Bucket(), err)
	}
	return nil
}

// Delete removes a key (absent keys are not an error).
func (b *Bucket) Delete(ctx context.Context, key string) error {
	if err := b.kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete %s from bucket %s: %w", key, b.kv.Bucket(), err)
	}
	return nil
}

// Changes signals on the returned channel after any key changes, until ctx
// ends. Signals coalesce: a reader re-reads the whole bucket.
func (b *Bucket) Changes(ctx context.Context) (<-chan struct{}, error) {
	w, err := b.kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("watch bucket %s: %w", b.kv.Bucket(), err)
	}
	out := make(chan struct{}, 1)
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
				if e == nil {
					continue
				}
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out, nil
}

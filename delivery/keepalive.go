package delivery

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// keeper tells JetStream, for every message held longer than interval,
// that it is still being worked on, so an attempt (or a wait for the rate
// limit, or storing a dead letter) may outlast the ack wait without the
// event being handed out again meanwhile. One ticker serves the loop: a
// timer per attempt was six allocations and a timer-heap insert per
// delivered event, for the few attempts that ever outlast interval.
type keeper struct {
	interval time.Duration
	mu       sync.Mutex
	held     map[jetstream.Msg]time.Time // message → when last signalled (or held)
}

func newKeeper(interval time.Duration) *keeper {
	return &keeper{interval: interval, held: map[jetstream.Msg]time.Time{}}
}

// hold keeps msg alive until release.
func (k *keeper) hold(msg jetstream.Msg) {
	if k.interval <= 0 {
		return
	}
	k.mu.Lock()
	k.held[msg] = time.Now()
	k.mu.Unlock()
}

func (k *keeper) release(msg jetstream.Msg) {
	if k.interval <= 0 {
		return
	}
	k.mu.Lock()
	delete(k.held, msg)
	k.mu.Unlock()
}

// run signals progress until ctx ends. Ticking at half the interval, a
// message waits at most 1.5 intervals for its first signal.
func (k *keeper) run(ctx context.Context) {
	if k.interval <= 0 {
		return
	}
	t := time.NewTicker(k.interval / 2)
	defer t.Stop()
	var due []jetstream.Msg
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			due = due[:0]
			k.mu.Lock()
			for m, since := range k.held {
				if now.Sub(since) >= k.interval {
					due = append(due, m)
					k.held[m] = now
				}
			}
			k.mu.Unlock()
			// Outside the lock: one released meanwhile is signalled once
			// more after its ack, which JetStream ignores.
			for _, m := range due {
				_ = m.InProgress()
			}
		}
	}
}

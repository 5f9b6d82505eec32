package delivery

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// keyQueues holds, per ordering key, the events waiting behind the one in
// delivery. A key has a worker while it has events; other keys go on.
type keyQueues struct {
	mu sync.Mutex
	q  map[string][]jetstream.Msg
}

// dispatchOrdered queues a keyed event behind earlier events of its key and
// starts the key's worker if it has none.
func (l *Loop) dispatchOrdered(runCtx, attemptCtx context.Context, key string, msg jetstream.Msg, wg *sync.WaitGroup, slots chan struct{}) {
	l.keys.mu.Lock()
	queue, active := l.keys.q[key]
	l.keys.q[key] = append(queue, msg)
	l.keys.mu.Unlock()
	if active {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.keyWorker(runCtx, attemptCtx, key, slots)
	}()
}

// keyWorker delivers a key's events one at a time, in order. A failed
// event is held here, not sent back to the outbox, and retried after its
// delay, so the events behind it (of this key only) wait; meanwhile all of
// them are kept from being redelivered elsewhere.
func (l *Loop) keyWorker(runCtx, attemptCtx context.Context, key string, slots chan struct{}) {
	// Every queued event of the key is kept alive for as long as the key
	// has a worker: behind a long attempt or a held retry, it may wait well
	// past the ack wait, and must not be handed out again meanwhile.
	stop := make(chan struct{})
	defer close(stop)
	go l.keepKeyAlive(key, stop)
	for {
		l.keys.mu.Lock()
		queue := l.keys.q[key]
		if len(queue) == 0 {
			delete(l.keys.q, key)
			l.keys.mu.Unlock()
			return
		}
		msg := queue[0]
		l.keys.mu.Unlock()

		for earlier := 0; ; earlier++ {
			// While the circuit is open, a key's held event waits for the
			// next probe, as the loop does, instead of retrying on its own
			// backoff: with every key retrying its head event, an outage
			// cost attempts in proportion to the keys and its length.
			if open, _ := l.brk.State(); open {
				l.brk.WaitProbe(runCtx)
				if runCtx.Err() != nil {
					l.releaseKey(key)
					return
				}
			}
			select {
			case slots <- struct{}{}:
			case <-runCtx.Done():
				l.releaseKey(key)
				return
			}
			wait := l.attempt(attemptCtx, msg, earlier)
			<-slots
			if wait == 0 {
				break
			}
			if !l.hold(runCtx, wait) {
				l.releaseKey(key)
				return
			}
		}

		l.keys.mu.Lock()
		l.keys.q[key] = l.keys.q[key][1:]
		l.keys.mu.Unlock()
	}
}

// hold waits d for a retry. It returns false on shutdown.
func (l *Loop) hold(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// keepKeyAlive tells the outbox every third of the ack wait that the key's
// queued events are still being worked on, until stop closes.
func (l *Loop) keepKeyAlive(key string, stop <-chan struct{}) {
	tick := time.NewTicker(max(l.cfg.AckWait/3, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			l.keys.mu.Lock()
			queue := append([]jetstream.Msg(nil), l.keys.q[key]...)
			l.keys.mu.Unlock()
			for _, m := range queue {
				_ = m.InProgress()
			}
		}
	}
}

// releaseKey hands a key's waiting events back to the outbox at shutdown,
// in order, so the next worker takes them up at once.
func (l *Loop) releaseKey(key string) {
	l.keys.mu.Lock()
	queue := l.keys.q[key]
	delete(l.keys.q, key)
	l.keys.mu.Unlock()
	for _, m := range queue {
		_ = m.Nak()
	}
}

package delivery

import (
	"context"
	"encoding/json"
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

// eventKey reads only the ordering key of an envelope.
func eventKey(data []byte) string {
	var k struct {
		Key string `json:"key"`
	}
	_ = json.Unmarshal(data, &k) // an undecodable event has no key; handle reports it
	return k.Key
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
			if !l.hold(runCtx, key, wait) {
				l.releaseKey(key)
				return
			}
		}

		l.keys.mu.Lock()
		l.keys.q[key] = l.keys.q[key][1:]
		l.keys.mu.Unlock()
	}
}

// hold waits d for a retry, telling the outbox every so often that the
// key's events are still being worked on. It returns false on shutdown.
func (l *Loop) hold(ctx context.Context, key string, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	keepAlive := time.NewTicker(max(l.cfg.AckWait/3, 100*time.Millisecond))
	defer keepAlive.Stop()
	for {
		select {
		case <-timer.C:
			return true
		case <-ctx.Done():
			return false
		case <-keepAlive.C:
			l.keys.mu.Lock()
			for _, m := range l.keys.q[key] {
				_ = m.InProgress()
			}
			l.keys.mu.Unlock()
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

package delivery

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// redeliveries times short retries in process and hands each event back
// with a plain NAK when its delay is up, instead of NakWithDelay.
//
// Why: with NakWithDelay the server alone decides when to redeliver, and
// on this machine about one event in 50,000 (bench/: e2e503-fast) was
// redelivered only after the consumer's ack wait (26 s) rather than after
// its ~100 ms delay. A plain NAK puts the event at the head of the
// redelivery queue at once. Delays longer than half the ack wait still use
// NakWithDelay: holding the event that long would need keep-alives, and a
// late redelivery costs proportionally little there.
type redeliveries struct {
	mu      sync.Mutex
	pending map[*time.Timer]pendingNak
	stopped bool
}

type pendingNak struct {
	msg jetstream.Msg
	due time.Time
}

// schedule hands msg back after delay.
func (r *redeliveries) schedule(msg jetstream.Msg, delay, ackWait time.Duration) error {
	if ackWait <= 0 || delay >= ackWait/2 {
		return msg.NakWithDelay(delay)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return msg.NakWithDelay(delay)
	}
	if r.pending == nil {
		r.pending = map[*time.Timer]pendingNak{}
	}
	// The ack wait restarts now, so the hold (under half of it) ends well
	// before JetStream would hand the event out again on its own.
	_ = msg.InProgress()
	var t *time.Timer
	t = time.AfterFunc(delay, func() {
		r.mu.Lock()
		_, mine := r.pending[t]
		delete(r.pending, t)
		r.mu.Unlock()
		if mine {
			_ = msg.Nak()
		}
	})
	r.pending[t] = pendingNak{msg: msg, due: time.Now().Add(delay)}
	return nil
}

// stop hands every event still waiting back to the server with its
// remaining delay, so a stopping node does not hold them until the ack
// wait runs out.
func (r *redeliveries) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	for t, p := range r.pending {
		if t.Stop() {
			_ = p.msg.NakWithDelay(max(time.Until(p.due), time.Millisecond))
		}
		delete(r.pending, t)
	}
}

// keepAlive tells JetStream every interval that msg is still being worked
// on, until the returned stop is called, so an attempt (or a wait for the
// rate limit, or storing a dead letter) may outlast the ack wait without the
// event being handed out again meanwhile. It costs one timer per attempt;
// nothing is sent for attempts shorter than interval.
func keepAlive(msg jetstream.Msg, interval time.Duration) (stop func()) {
	if interval <= 0 {
		return func() {}
	}
	var (
		mu      sync.Mutex
		stopped bool
		t       *time.Timer
	)
	t = time.AfterFunc(interval, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		_ = msg.InProgress()
		t.Reset(interval)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

package delivery

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

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
	// t is assigned under mu, which the callback takes before using it.
	mu.Lock()
	defer mu.Unlock()
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

package delivery

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// progressMsg counts InProgress calls; the rest of jetstream.Msg is unused.
type progressMsg struct {
	jetstream.Msg
	n atomic.Int32
}

func (m *progressMsg) InProgress() error { m.n.Add(1); return nil }

func TestKeeperSignalsProgressUntilReleased(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := newKeeper(10 * time.Millisecond)
	go k.run(ctx)
	long, short := &progressMsg{}, &progressMsg{}
	k.hold(long)
	k.hold(short)
	k.release(short)
	deadline := time.Now().Add(5 * time.Second)
	for long.n.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d progress signals in 5s, want at least 3", long.n.Load())
		}
		time.Sleep(time.Millisecond)
	}
	k.release(long)
	if short.n.Load() != 0 {
		t.Error("a message released before the interval got a progress signal")
	}
	k.mu.Lock()
	_, still := k.held[long]
	k.mu.Unlock()
	if still {
		t.Error("a released message is still kept alive")
	}
}

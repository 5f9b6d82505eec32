package delivery

import (
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

func TestKeepAliveSignalsProgressUntilStopped(t *testing.T) {
	m := &progressMsg{}
	stop := keepAlive(m, 10*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for m.n.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d progress signals in 5s, want at least 3", m.n.Load())
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	quiet := &progressMsg{}
	keepAlive(quiet, time.Hour)()
	if quiet.n.Load() != 0 {
		t.Error("an attempt shorter than the interval sent a progress signal")
	}
}

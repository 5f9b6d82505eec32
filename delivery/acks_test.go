package delivery

import (
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// Every ack queued before stop is sent by the time stop returns, however
// the bursts fell.
func TestAckerSendsEveryQueuedAckBeforeStopReturns(t *testing.T) {
	a := startAcker(slog.New(slog.NewTextHandler(io.Discard, nil)))
	msg := &storedMsg{}
	var producers sync.WaitGroup
	for range 4 {
		producers.Go(func() {
			for range 1000 {
				a.ack(msg, "e")
			}
		})
	}
	producers.Wait()
	a.stop()
	if n := msg.acks.Load(); n != 4000 {
		t.Fatalf("%d acks sent, want 4000", n)
	}
}

// notifiedMsg reports its acknowledgement on a channel.
type notifiedMsg struct {
	storedMsg
	acked chan struct{}
}

func (m *notifiedMsg) Ack() error { close(m.acked); return nil }

// A lone ack leaves once the gather window ends, without more acks or a
// stop to push it out.
func TestAckerSendsALoneAckAfterTheWindow(t *testing.T) {
	a := startAcker(slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer a.stop()
	msg := &notifiedMsg{acked: make(chan struct{})}
	a.ack(msg, "e")
	select {
	case <-msg.acked:
	case <-time.After(5 * time.Second):
		t.Fatal("a lone ack was not sent within 5 s")
	}
}

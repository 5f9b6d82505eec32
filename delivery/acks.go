package delivery

import (
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// acker sends the loop's acknowledgements in bursts. An ack is a small
// publish, and sent as each attempt ended, every one made the NATS
// client's flusher write on its own: 5.8% of a backlog drain's CPU, in
// write syscalls, plus the server's reads (one per ack). Gathered for up
// to ackGather, a burst leaves in a few writes. The delay is far inside
// the ack wait, and max ack pending (at least 1,000) leaves room for the
// acks held meanwhile.
type acker struct {
	in   chan pendingAck
	done chan struct{}
	log  *slog.Logger
}

// pendingAck is a message to acknowledge and its event's id, for the log
// (empty for another sink's retry, which the loop skips).
type pendingAck struct {
	msg     jetstream.Msg
	eventID string
}

const (
	ackGather = time.Millisecond
	ackBurst  = 256
)

// startAcker starts the acknowledging goroutine; stop sends what is queued
// and ends it.
func startAcker(log *slog.Logger) *acker {
	a := &acker{in: make(chan pendingAck, 4*ackBurst), done: make(chan struct{}), log: log}
	go a.run()
	return a
}

// ack queues msg for acknowledgement.
func (a *acker) ack(msg jetstream.Msg, eventID string) { a.in <- pendingAck{msg, eventID} }

// stop acknowledges everything queued and returns once it is sent. No ack
// may be queued after it.
func (a *acker) stop() {
	close(a.in)
	<-a.done
}

func (a *acker) run() {
	defer close(a.done)
	burst := make([]pendingAck, 0, ackBurst)
	window := time.NewTimer(ackGather)
	window.Stop()
	for {
		first, ok := <-a.in
		if !ok {
			return
		}
		burst = append(burst[:0], first)
		window.Reset(ackGather)
		open := true
		for open && len(burst) < ackBurst {
			select {
			case p, more := <-a.in:
				if !more {
					open = false
					break
				}
				burst = append(burst, p)
			case <-window.C:
				open = false
			}
		}
		window.Stop()
		for _, p := range burst {
			if err := p.msg.Ack(); err != nil {
				// The event will be redelivered: a duplicate, never a loss.
				a.log.Warn("acknowledgement failed; the event may be delivered again", "event_id", p.eventID, "subject", p.msg.Subject(), "err", err)
			}
		}
	}
}

package delivery

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Redeliveries exposes the retry timer to the external tests, which need
// testutil (and testutil imports this package through config).
type Redeliveries struct{ r redeliveries }

func (x *Redeliveries) Schedule(msg jetstream.Msg, delay, ackWait time.Duration) error {
	return x.r.schedule(msg, delay, ackWait)
}

func (x *Redeliveries) Stop() { x.r.stop() }

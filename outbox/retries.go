package outbox

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of an event put back into the outbox to wait for a later retry.
const (
	// HeaderAttempts counts the attempts made so far.
	HeaderAttempts = "Courier-Attempts"
	// HeaderStored is when the event was first stored (RFC 3339), for its
	// max_age.
	HeaderStored = "Courier-Stored"
	// HeaderNotBefore is when the next attempt is due (RFC 3339).
	HeaderNotBefore = "Courier-Not-Before"
)

// Retries puts events back into the outbox, addressed to one sink, to wait
// for a later attempt there instead of at their old position.
//
// A delayed nak keeps an event at its position, and the outbox can only
// trim below the oldest position some sink still owes: one event waiting
// hours for its next attempt would hold every later event in the outbox
// and fill it. Moved to the end, it holds back only what came after its
// last move.
type Retries struct {
	js jetstream.JetStream
}

// NewRetries returns a Retries over js.
func NewRetries(js jetstream.JetStream) *Retries { return &Retries{js: js} }

// Requeue stores data (an envelope) again for the sink, with hdr, and
// returns once JetStream acknowledged it. dedupID makes a repeat after a
// crash store it once.
func (r *Retries) Requeue(ctx context.Context, sink, eventType string, data []byte, hdr nats.Header, dedupID string) error {
	m := nats.NewMsg(replaySubject(sink, eventType))
	m.Data = data
	for k, v := range hdr {
		m.Header[k] = v
	}
	m.Header.Set(nats.MsgIdHdr, dedupID)
	if _, err := r.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("requeue event for sink %s: %w", sink, mapAPIError(err))
	}
	return nil
}

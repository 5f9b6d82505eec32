package delivery

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/outbox"
)

// DefaultParkAfter is the longest wait a retry spends at the event's own
// outbox position; longer waits move the event to the end of the outbox
// (see outbox.Retries), so it holds back at most this long a stretch of
// other events from being trimmed.
const DefaultParkAfter = time.Minute

// lineage is what a message says about the attempts before it.
type lineage struct {
	parked    bool      // put back by an earlier attempt
	attempts  int       // attempts made before this delivery (parked only)
	stored    time.Time // when the event was first stored
	notBefore time.Time // the next attempt is due (parked only)
}

func readLineage(msg jetstream.Msg, md *jetstream.MsgMetadata) lineage {
	h := msg.Headers()
	lin := lineage{stored: md.Timestamp}
	v := h.Get(outbox.HeaderAttempts)
	if v == "" { // never parked: most events, and Atoi's error allocates
		return lin
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return lin
	}
	lin.parked, lin.attempts = true, n
	if t, err := time.Parse(time.RFC3339Nano, h.Get(outbox.HeaderStored)); err == nil {
		lin.stored = t
	}
	if t, err := time.Parse(time.RFC3339Nano, h.Get(outbox.HeaderNotBefore)); err == nil {
		lin.notBefore = t
	}
	return lin
}

// attempt is the number of the attempt this delivery makes. A parked event
// is attempted once per position (a failure parks it again), so its count
// comes from its header; otherwise JetStream's delivery count is it.
func (lin lineage) attempt(md *jetstream.MsgMetadata) int {
	if lin.parked {
		return lin.attempts + 1
	}
	return int(md.NumDelivered)
}

// waitOrPark handles a parked event whose attempt is not yet due: the first
// time it waits where it is (at most parkAfter); after that it moves to the
// end of the outbox again. It reports whether the message was settled.
func (l *Loop) waitOrPark(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, lin lineage, eventType string) bool {
	wait := lin.notBefore.Sub(l.now())
	if !lin.parked || wait <= 0 {
		return false
	}
	inPlace, delay := earlyWait(md.NumDelivered, wait, l.cfg.ParkAfter)
	if inPlace {
		_ = msg.NakWithDelay(delay)
		return true
	}
	if err := l.park(ctx, msg, md, lin, eventType); err != nil {
		l.log.WarnContext(ctx, "could not move a waiting event to the end of the outbox; it waits in place", "err", err)
		_ = msg.NakWithDelay(delay)
	}
	return true
}

// park stores the event again at the end of the outbox for this sink, with
// its lineage, then acknowledges this copy.
func (l *Loop) park(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, lin lineage, eventType string) error {
	hdr := nats.Header{}
	for k, v := range traceFields(msg.Headers()) {
		hdr.Set(k, v)
	}
	hdr.Set(outbox.HeaderAttempts, strconv.Itoa(lin.attempts))
	hdr.Set(outbox.HeaderStored, lin.stored.UTC().Format(time.RFC3339Nano))
	hdr.Set(outbox.HeaderNotBefore, lin.notBefore.UTC().Format(time.RFC3339Nano))
	putCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dedup := fmt.Sprintf("park:%s:%d", l.cfg.Name, md.Sequence.Stream)
	if err := l.retries.Requeue(putCtx, l.cfg.Name, eventType, msg.Data(), hdr, dedup); err != nil {
		return err
	}
	l.stats.Parked.Add(1)
	if err := msg.Ack(); err != nil {
		// The old copy comes back and is parked again under the same
		// dedup id: stored once.
		return fmt.Errorf("acknowledge parked event: %w", err)
	}
	return nil
}

// scheduleRetry waits in place for short delays and parks for long ones
// (and always for an already parked event, whose attempt count lives in
// its headers).
func (l *Loop) scheduleRetry(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, lin lineage, attempt int, delay time.Duration, eventType string) error {
	if retryInPlace(lin.parked, delay, l.cfg.ParkAfter) {
		return msg.NakWithDelay(delay)
	}
	next := lineage{parked: true, attempts: attempt, stored: lin.stored, notBefore: l.now().Add(delay)}
	if err := l.park(ctx, msg, md, next, eventType); err != nil {
		_ = msg.NakWithDelay(min(delay, l.cfg.ParkAfter))
		return err
	}
	return nil
}

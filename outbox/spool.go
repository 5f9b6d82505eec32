package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/spool"
)

// spoolable reports whether err is a failure that passes, so the event is
// worth keeping for later, as opposed to one that sending again cannot fix
// (too large, invalid, outbox full: that one waits for the sinks, and
// spooling would only hide the backlog from the producer).
func spoolable(err error) bool {
	for _, target := range []error{
		ErrUnreachable, ErrNoAck, ErrNoStream, ErrUnavailable,
		nats.ErrNoResponders, nats.ErrTimeout, nats.ErrConnectionClosed,
		nats.ErrConnectionReconnecting, nats.ErrConnectionDraining,
		nats.ErrDisconnected, nats.ErrReconnectBufExceeded, nats.ErrStaleConnection,
		nats.ErrNoServers, nats.ErrInvalidConnection, context.DeadlineExceeded,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// spooledError says where an event went and why; errors.Is matches
// ErrSpooled and the cause.
type spooledError struct {
	id, dir string
	cause   error
}

func (e *spooledError) Error() string {
	return fmt.Sprintf("event %s spooled in %s (%v); it will be sent once the outbox is reachable", e.id, e.dir, e.cause)
}

func (e *spooledError) Is(target error) bool { return target == ErrSpooled }

func (e *spooledError) Unwrap() error { return e.cause }

func (p *Publisher) spooledError(id string, cause error) error {
	return &spooledError{id: id, dir: p.spool.Dir(), cause: cause}
}

// fail settles pe with err, first putting the event in the spool when there
// is one and err passes.
func (p *Publisher) fail(pe *Pending, err error) {
	if p.spool == nil || pe.fromSpool || !spoolable(err) {
		pe.finish(err, false)
		return
	}
	if perr := p.spool.Put(pe.env); perr != nil {
		pe.finish(fmt.Errorf("%w; writing it to the spool failed too: %v", err, perr), false)
		return
	}
	pe.settle(p.spooledError(pe.env.ID, err), false, true)
}

// notConnected is the cause given for an event spooled without being sent.
func (p *Publisher) notConnected() error {
	if p.connState != nil {
		if err := p.connState.get(); err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: connection %s", ErrUnreachable, strings.ToLower(p.nc.Status().String()))
}

// flushInterval is how often a Publisher looks at its spool. Looking at an
// empty spool is one directory read.
const flushInterval = time.Second

// flushLoop sends the spool's events while the Publisher lives.
func (p *Publisher) flushLoop(ctx context.Context) {
	defer close(p.flushDone)
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !p.nc.IsConnected() || !p.flushMu.TryLock() {
			continue
		}
		n, err := p.spool.Flush(ctx, p.emitFromSpool)
		p.flushMu.Unlock()
		if n > 0 {
			p.log.Info("sent spooled events", "count", n, "spool", p.spool.Dir())
		}
		switch {
		case err == nil:
			failing = false
		case ctx.Err() != nil:
			return
		case errors.Is(err, spool.ErrBadFile):
			p.log.Error("spool flush", "spool", p.spool.Dir(), "error", err)
		case !failing:
			// Once per outage, not every second.
			failing = true
			p.log.Warn("spooled events not sent yet", "spool", p.spool.Dir(), "error", err)
		}
	}
}

// FlushSpool sends sp's events through pub, in id order, with the same ids
// they were spooled with, and deletes each once the outbox stored it (or
// held it already). It stops at the first event the outbox cannot take now
// and returns that error; an event it will never take (too large for pub,
// invalid) is moved to sp's bad/ directory and reported with
// spool.ErrBadFile. It returns how many events were sent. pub need not
// have a spool of its own; flushing a directory another process writes to,
// or flushes too, is safe.
func FlushSpool(ctx context.Context, pub *Publisher, sp *spool.Spool) (int, error) {
	if pub == nil || sp == nil {
		return 0, errors.New("flush spool: no publisher or no spool given")
	}
	if sp == pub.spool {
		// The background flush would only send the same events again.
		pub.flushMu.Lock()
		defer pub.flushMu.Unlock()
	}
	return sp.Flush(ctx, pub.emitFromSpool)
}

// emitFromSpool is the emit function for spool.Flush: it never writes back
// to the spool, and sorts failures into "later" and "never".
func (p *Publisher) emitFromSpool(ctx context.Context, e event.Envelope) error {
	if !p.nc.IsConnected() {
		return p.notConnected()
	}
	pe, err := p.emitAsync(ctx, e, true)
	if err == nil {
		_, err = pe.Wait(ctx)
	}
	if errors.Is(err, ErrTooLarge) || errors.Is(err, event.ErrInvalid) {
		return fmt.Errorf("%w: %w", spool.ErrRejected, err)
	}
	return err
}

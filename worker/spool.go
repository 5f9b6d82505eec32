package worker

import (
	"context"
	"errors"
	"time"

	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/spool"
)

// spoolCheck is how often the node looks at the producers' spool; an empty
// spool costs one directory read.
const spoolCheck = time.Second

// flushSpool sends on the events producers on this node spooled while the
// outbox could not take them (the node cut off from its cluster's quorum,
// say), with their own ids, so that no further emit run is needed.
func (w *Worker) flushSpool(ctx context.Context, sp *spool.Spool, pub *outbox.Publisher) {
	tick := time.NewTicker(spoolCheck)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if n, err := sp.Len(); err != nil || n == 0 {
			continue
		}
		sent, err := outbox.FlushSpool(ctx, pub, sp)
		if sent > 0 {
			w.log.Info("spooled events sent to the outbox", "events", sent, "spool", sp.Dir())
		}
		switch {
		case errors.Is(err, spool.ErrBadFile):
			w.log.Error("spool file moved aside: it cannot be sent", "spool", sp.Dir(), "err", err)
		case err != nil && ctx.Err() == nil:
			if !failing {
				w.log.Warn("spooled events wait: the outbox does not take them yet", "spool", sp.Dir(), "err", err)
			}
			failing = true
			continue
		}
		failing = false
	}
}

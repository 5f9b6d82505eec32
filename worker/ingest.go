package worker

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/courierhq/courier/ingest"
	"github.com/courierhq/courier/outbox"
)

// ingestState is the HTTP ingest endpoint's part of a node.
type ingestState struct {
	nc      *nats.Conn
	pub     *outbox.Publisher
	handler *ingest.Handler
}

// startIngest prepares the ingest endpoint on a connection of its own, so
// that a flood of posted events queues behind itself and not in front of
// the delivery loops' acknowledgements.
func (w *Worker) startIngest(ctx context.Context) error {
	tokens, err := w.cfg.Ingest.TokenAccounts()
	if err != nil {
		return err
	}
	nc, err := outbox.Connect(ctx, w.url, "courier-ingest-"+w.cfg.NodeID, 10*time.Second, w.connOpts...)
	if err != nil {
		return fmt.Errorf("ingest endpoint: %w", err)
	}
	opts := []outbox.PublisherOption{outbox.WithNode(w.cfg.NodeID), outbox.WithMaxEventSize(int(w.cfg.Outbox.MaxEventSize))}
	if tp := w.tracer(); tp != nil {
		opts = append(opts, outbox.WithTracerProvider(tp))
	}
	pub, err := outbox.NewPublisher(nc, opts...)
	if err != nil {
		nc.Close()
		return fmt.Errorf("ingest endpoint: %w", err)
	}
	h, err := ingest.New(ingest.Options{
		Publisher: pub, Tokens: tokens, MaxBodyBytes: int64(w.cfg.Ingest.MaxBodyBytes),
		Timeout: w.cfg.Ingest.Timeout, Meter: w.meter(), Log: w.log,
	})
	if err != nil {
		pub.Close()
		nc.Close()
		return err
	}
	w.httpIngest = &ingestState{nc: nc, pub: pub, handler: h}
	return nil
}

// IngestHandler serves POST /v1/events for producers over HTTP; nil when
// ingest.listen is off. Serve it on its own listener, and stop that before
// Shutdown, so that no request is answered after the outbox went away.
func (w *Worker) IngestHandler() http.Handler {
	if w.httpIngest == nil {
		return nil
	}
	return w.httpIngest.handler
}

func (w *Worker) stopIngest() {
	if w.httpIngest == nil {
		return
	}
	w.httpIngest.pub.Close()
	w.httpIngest.nc.Close()
}

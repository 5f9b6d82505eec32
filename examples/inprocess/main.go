// Command inprocess embeds a Courier worker in a Go program and delivers
// events to one of the program's own functions: a sink of type handler,
// CloudStack's in-memory event bus with the outbox behind it. Each event
// is on disk before Emit returns; the function's failures are retried with
// backoff (the first call of each event fails here, to show it), a
// permanent failure becomes a dead letter, and events of one key arrive in
// the order they were emitted.
//
//	go run ./examples/inprocess
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/sinks/builtin"
	"github.com/courierhq/courier/sinks/handler"
	"github.com/courierhq/courier/worker"
)

const configYAML = `
node_id: inprocess
admin: {listen: "off"}
outbox: {listen: "127.0.0.1:0"}
event_log: {enabled: false}
sinks:
  - name: cache
    type: handler
    handler: invalidate-cache      # the name the program registers below
    ordering: key                  # one volume's events in emit order
    retry: {initial: 100ms, max_interval: 1s}
`

func main() {
	dir, err := os.MkdirTemp("", "courier-inprocess-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout, dir); err != nil {
		log.Fatalf("inprocess: %v", err)
	}
}

// run starts a worker with its data in dataDir, emits three events on two
// keys and waits until the handler applied all of them.
func run(ctx context.Context, out io.Writer, dataDir string) error {
	var (
		mu      sync.Mutex
		tried   = map[string]bool{}
		applied = make(chan string, 16)
	)
	invalidate := func(_ context.Context, e event.Envelope) error {
		mu.Lock()
		defer mu.Unlock()
		if !tried[e.ID] {
			tried[e.ID] = true
			fmt.Fprintf(out, "%s %s: cache busy, retried\n", e.Type, e.ID)
			return errors.New("cache busy") // any error but retry.NewPermanent is retried
		}
		fmt.Fprintf(out, "%s %s: cache entry %s invalidated\n", e.Type, e.ID, e.Key)
		applied <- e.ID
		return nil
	}

	// The program's function becomes a kind of sink: the handler kind
	// with it replaces the built-in one, which has none.
	kinds := builtin.Kinds(handler.NewKind(handler.Funcs{"invalidate-cache": invalidate}))
	cfg, err := config.Parse([]byte(configYAML), os.LookupEnv, kinds)
	if err != nil {
		return err
	}
	cfg.DataDir, cfg.SpoolDir = dataDir, dataDir+"/spool"

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	w, err := worker.Start(ctx, cfg, "example", quiet)
	if err != nil {
		return err
	}
	defer w.Shutdown(context.Background())

	pub, err := outbox.Dial(ctx, w.URL(), 5*time.Second)
	if err != nil {
		return err
	}
	defer pub.Close()
	events := []event.Envelope{
		{ID: "ev-1", Type: "VOLUME_SET", Key: "gv1"},
		{ID: "ev-2", Type: "VOLUME_SET", Key: "gv2"},
		{ID: "ev-3", Type: "VOLUME_STOP", Key: "gv1"},
	}
	for _, e := range events {
		if _, err := pub.Emit(ctx, e); err != nil { // returns once the event is fsynced
			return err
		}
	}
	for range events {
		select {
		case <-applied:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the handler: %w", ctx.Err())
		}
	}
	return nil
}

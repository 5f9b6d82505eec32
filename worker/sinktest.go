package worker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/netguard"
	"github.com/courierhq/courier/retry"
)

// TestResult is the outcome of one test event sent to a sink.
type TestResult struct {
	EventID string
	Took    time.Duration
	Kind    retry.Kind // when Err is set: how the failure classifies
	Err     error
}

// SendTestEvent builds the sink and sends it one COURIER_TEST event, as
// gluster-eventsapi webhook-test does; nothing goes through the outbox. A
// handler sink cannot be tested this way: its function lives in the
// program that runs the worker.
func SendTestEvent(ctx context.Context, sc config.Sink, node, version string, guard *netguard.Guard) TestResult {
	sink, err := BuildSink(sc, version, nil, guard, nil)
	if err != nil {
		return TestResult{Err: err, Kind: retry.Permanent}
	}
	defer sink.Close(ctx)
	ev := event.Envelope{Type: "COURIER_TEST", Source: "courier-worker", Data: json.RawMessage(`{"message":"test event from Courier"}`)}
	if err := ev.Complete(node); err != nil {
		return TestResult{Err: err, Kind: retry.Permanent}
	}
	start := time.Now()
	err = sink.Send(ctx, &ev)
	res := TestResult{EventID: ev.ID, Took: time.Since(start).Round(time.Millisecond), Err: err}
	if err != nil {
		res.Kind = retry.Classify(err).Kind
	}
	return res
}

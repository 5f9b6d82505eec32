package delivery

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

const instrumentationName = "github.com/courierhq/courier/delivery"

// Outcomes of an attempt, as span attributes and metric labels.
const (
	outcomeDelivered    = "delivered"
	outcomeRetried      = "retried"
	outcomeDeadLettered = "dead_lettered"
	outcomeFiltered     = "filtered"
	outcomeInterrupted  = "interrupted"
	outcomeDisabled     = "disabled"
)

// telemetry is a loop's tracer and metric instruments, bound to its sink.
type telemetry struct {
	tracer       trace.Tracer
	spanName     string
	consumerSpan trace.SpanStartOption
	deliveries   metric.Int64Counter
	latency      metric.Float64Histogram
	attempt      metric.Float64Histogram
	// Attribute sets made once: building a set per attempt (sorting and
	// hashing the attributes) cost about 5% of the CPU of a backlog drain.
	// Kept as the option slices the calls take: passing one option to a
	// variadic parameter allocated a slice per call.
	bySink    []metric.RecordOption
	byOutcome map[string]outcomeOptions
}

type outcomeOptions struct {
	add    []metric.AddOption
	record []metric.RecordOption
}

// latencyBuckets span 1 ms to a day: delivery latency includes retries.
var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400}

func newTelemetry(sink string, tp trace.TracerProvider, mp metric.MeterProvider) (telemetry, error) {
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	m := mp.Meter(instrumentationName)
	t := telemetry{
		tracer:       tp.Tracer(instrumentationName),
		spanName:     "process " + sink,
		consumerSpan: trace.WithSpanKind(trace.SpanKindConsumer),
		bySink:       []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("sink", sink)))},
		byOutcome:    map[string]outcomeOptions{},
	}
	for _, o := range []string{outcomeDelivered, outcomeRetried, outcomeDeadLettered, outcomeFiltered, outcomeInterrupted, outcomeDisabled} {
		opt := metric.WithAttributeSet(attribute.NewSet(attribute.String("sink", sink), attribute.String("outcome", o)))
		t.byOutcome[o] = outcomeOptions{add: []metric.AddOption{opt}, record: []metric.RecordOption{opt}}
	}
	var err error
	if t.deliveries, err = m.Int64Counter("courier.deliveries",
		metric.WithDescription("Delivery attempts by sink and outcome (delivered, retried, dead_lettered, filtered)."),
		metric.WithUnit("{attempt}")); err != nil {
		return t, fmt.Errorf("metric courier.deliveries: %w", err)
	}
	if t.latency, err = m.Float64Histogram("courier.delivery.latency",
		metric.WithDescription("Time from the event's time to the sink's confirmation, retries included."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(latencyBuckets...)); err != nil {
		return t, fmt.Errorf("metric courier.delivery.latency: %w", err)
	}
	if t.attempt, err = m.Float64Histogram("courier.delivery.attempt.duration",
		metric.WithDescription("Duration of one delivery attempt, by sink and outcome."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(latencyBuckets[:13]...)); err != nil {
		return t, fmt.Errorf("metric courier.delivery.attempt.duration: %w", err)
	}
	return t, nil
}

func (t telemetry) count(ctx context.Context, outcome string) {
	t.deliveries.Add(ctx, 1, t.byOutcome[outcome].add...)
}

func (t telemetry) attemptDone(ctx context.Context, outcome string, took time.Duration) {
	t.attempt.Record(ctx, took.Seconds(), t.byOutcome[outcome].record...)
}

// delivered records the time from the event's time to its confirmation.
func (t telemetry) delivered(ctx context.Context, latency time.Duration) {
	t.latency.Record(ctx, latency.Seconds(), t.bySink...)
}

// outcome is the action's metric label and span attribute value.
func (a Action) outcome() string {
	switch a {
	case Ack:
		return outcomeDelivered
	case Retry:
		return outcomeRetried
	case DeadLetter:
		return outcomeDeadLettered
	}
	return outcomeDisabled
}

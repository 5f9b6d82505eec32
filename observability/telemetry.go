package observability

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Propagator returns the W3C trace-context propagator (traceparent,
// tracestate) used through event headers, webhook requests, AMQP and Kafka
// headers. Courier never installs a global propagator.
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

// NATSCarrier reads trace context from NATS message headers (a nats.Header),
// whose keys are case-sensitive, unlike HTTP's. It reads them in place:
// copying them into a lower-cased map was three allocations per delivered
// event, for the two keys trace context has.
func NATSCarrier(h map[string][]string) propagation.TextMapCarrier { return natsCarrier(h) }

type natsCarrier map[string][]string

func (c natsCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 { // as stored by emit: lower case
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

func (c natsCarrier) Set(key, value string) { c[key] = []string{value} }

func (c natsCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, strings.ToLower(k))
	}
	return keys
}

// Telemetry holds the tracer and meter providers of one process.
type Telemetry struct {
	Tracer   trace.TracerProvider
	Meter    metric.MeterProvider
	registry *prometheus.Registry
	shutdown []func(context.Context) error
}

// Setup configures tracing from the standard OTEL_* variables and metrics
// for Prometheus. Tracing stays off (a no-op provider, nothing measurable)
// unless OTEL_TRACES_EXPORTER or an OTLP endpoint variable is set;
// autoexport then picks otlp (grpc or http/protobuf per
// OTEL_EXPORTER_OTLP_PROTOCOL), console or none.
func Setup(ctx context.Context, service, version string) (*Telemetry, error) {
	if v := os.Getenv("OTEL_SERVICE_NAME"); v != "" {
		service = v
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName(service), semconv.ServiceVersion(version)))
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	var tp trace.TracerProvider = noop.NewTracerProvider()
	var shutdown []func(context.Context) error
	if tracingRequested() {
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("trace exporter (OTEL_TRACES_EXPORTER): %w", err)
		}
		if !autoexport.IsNoneSpanExporter(exp) {
			sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
			tp, shutdown = sdk, append(shutdown, sdk.Shutdown)
		}
	}
	t, err := New(tp, sdkmetric.WithResource(res))
	if err != nil {
		return nil, err
	}
	t.shutdown = append(t.shutdown, shutdown...)
	return t, nil
}

// New returns telemetry exporting spans to tp (a no-op provider for none)
// and metrics for Prometheus on a registry of its own.
func New(tp trace.TracerProvider, opts ...sdkmetric.Option) (*Telemetry, error) {
	t := &Telemetry{Tracer: tp, registry: prometheus.NewRegistry()}
	exporter, err := otelprom.New(otelprom.WithRegisterer(t.registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(append(opts, sdkmetric.WithReader(exporter))...)
	t.Meter = mp
	t.shutdown = append(t.shutdown, mp.Shutdown)
	return t, nil
}

// Tracing reports whether spans go anywhere.
func (t *Telemetry) Tracing() bool {
	_, off := t.Tracer.(noop.TracerProvider)
	return !off
}

func tracingRequested() bool {
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		if os.Getenv(k) != "" {
			return true
		}
	}
	return false
}

// MetricsHandler serves the Prometheus exposition of the meters.
func (t *Telemetry) MetricsHandler() http.Handler {
	// OpenMetrics, when the scraper asks for it, carries the histograms'
	// exemplars: the trace id of a sampled delivery, so a slow one in a
	// panel links to its trace.
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// Shutdown flushes spans still buffered.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}

package observability

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// SendSpan starts the span of one send to a sink's peer (an HTTP request,
// an AMQP publish, a Kafka produce) below the delivery attempt in ctx. With
// a nil tracer (tracing off) it does nothing. finish ends the span with the
// outcome; extra attributes are added first.
func SendSpan(ctx context.Context, tracer trace.Tracer, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, func(err error, extra ...attribute.KeyValue)) {
	if tracer == nil {
		return ctx, func(error, ...attribute.KeyValue) {}
	}
	ctx, span := tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	return ctx, func(err error, extra ...attribute.KeyValue) {
		span.SetAttributes(extra...)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

package observability

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// Trace context comes back from NATS headers whatever the case of their
// keys: emit writes them lower case, other producers may not.
func TestNATSCarrierReadsAnyCase(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, key := range []string{"traceparent", "Traceparent", "TRACEPARENT"} {
		h := map[string][]string{key: {parent}, "Nats-Msg-Id": {"e1"}}
		sc := trace.SpanContextFromContext(Propagator().Extract(context.Background(), NATSCarrier(h)))
		if got := sc.TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("header %q: trace id %q, want the parent's", key, got)
		}
	}
	if got := NATSCarrier(map[string][]string{"Nats-Msg-Id": {"e1"}}).Get("traceparent"); got != "" {
		t.Errorf("no trace context: Get = %q, want empty", got)
	}
}

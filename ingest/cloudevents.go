package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/observability"
)

// decodeCloudEvent reads one CloudEvent in the JSON event format
// (structured mode, or an element of a batch).
func decodeCloudEvent(b []byte) item {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return item{err: invalid("not a CloudEvent in JSON: %v", err)}
	}
	var data json.RawMessage
	attrs := make(map[string]string, len(fields))
	for name, raw := range fields {
		switch name {
		case "data":
			if !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
				data = raw
			}
			continue
		case "data_base64":
			return item{err: invalid("CloudEvents data_base64: Courier carries JSON data only")}
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return item{err: invalid("CloudEvents attribute %s must be a string", name)}
		}
		attrs[name] = s
	}
	return fromCloudEvent(attrs, data)
}

// decodeBinaryCloudEvent reads a CloudEvent in HTTP binary mode: its
// attributes in ce-* headers, its data the body, whose media type is the
// Content-Type.
func decodeBinaryCloudEvent(h http.Header, body []byte) (item, error) {
	attrs := map[string]string{}
	for name, values := range h {
		attr, ok := strings.CutPrefix(strings.ToLower(name), "ce-")
		if !ok || len(values) == 0 {
			continue
		}
		// The HTTP binding percent-encodes what a header cannot carry.
		v, err := url.PathUnescape(values[0])
		if err != nil {
			return item{}, badRequest("header %s: %v", name, err)
		}
		attrs[attr] = v
	}
	body = bytes.TrimSpace(body)
	if ct := h.Get("Content-Type"); len(body) > 0 && !isJSONMedia(ct) {
		return item{}, &requestError{http.StatusUnsupportedMediaType,
			"a binary-mode CloudEvent's Content-Type is its data's: Courier carries JSON data only (application/json or +json), got " + ct}
	}
	it := fromCloudEvent(attrs, body)
	if it.err != nil {
		return item{}, badRequest("%v", it.err)
	}
	// Binary mode's traceparent is the request's own header: the trace
	// context comes from the request, as for every other event.
	it.parent = trace.SpanContext{}
	return it, nil
}

// fromCloudEvent maps attributes onto an envelope. The distributed tracing
// extension (traceparent, tracestate) is the context the event's emit span
// continues, not an attribute to keep; datacontenttype must name JSON,
// which is what the envelope's data is and what every sink sends.
func fromCloudEvent(attrs map[string]string, data json.RawMessage) item {
	var parent trace.SpanContext
	if tp := attrs["traceparent"]; tp != "" {
		carrier := propagation.MapCarrier{"traceparent": tp}
		if ts := attrs["tracestate"]; ts != "" {
			carrier["tracestate"] = ts
		}
		parent = trace.SpanContextFromContext(observability.Propagator().Extract(context.Background(), carrier))
	}
	delete(attrs, "traceparent")
	delete(attrs, "tracestate")
	if ct, ok := attrs["datacontenttype"]; ok {
		if !isJSONMedia(ct) {
			return item{err: invalid("CloudEvents datacontenttype %s: Courier carries JSON data only", ct)}
		}
		delete(attrs, "datacontenttype")
	}
	env, err := event.FromCloudEvent(attrs, data)
	if err != nil {
		return item{err: err}
	}
	return item{env: env, parent: parent}
}

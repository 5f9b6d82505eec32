package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/event"
)

// Content types the endpoint reads.
const (
	contentJSON            = "application/json"
	contentNDJSON          = "application/x-ndjson"
	contentCloudEvent      = "application/cloudevents+json"
	contentCloudEventBatch = "application/cloudevents-batch+json"
)

// item is one event of a request: its envelope and the trace it continues,
// or why it cannot be stored.
type item struct {
	env event.Envelope
	// parent is the trace a structured CloudEvent's traceparent names;
	// invalid: the request's.
	parent trace.SpanContext
	line   int   // NDJSON only
	err    error // invalid: not stored
}

// requestError answers the whole request with status and nothing stored.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// request is a decoded request body.
type request struct {
	items []item
	// batch: answer with per-event results (array, NDJSON, CloudEvents
	// batch) rather than one event's outcome.
	batch bool
}

// decode reads body as the request's content type says. A body that cannot
// be split into events is a requestError; an event that is wrong on its own
// is an item with err, so a batch stores the others.
func decode(r *http.Request, body []byte) (request, error) {
	if r.Header.Get("Ce-Specversion") != "" {
		it, err := decodeBinaryCloudEvent(r.Header, body)
		if err != nil {
			return request{}, err
		}
		return request{items: []item{it}}, nil
	}
	ct := r.Header.Get("Content-Type")
	media, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil {
		media = ""
	}
	switch media {
	case contentJSON:
		return decodeJSON(body)
	case contentNDJSON:
		return decodeNDJSON(body)
	case contentCloudEvent:
		it := decodeCloudEvent(bytes.TrimSpace(body))
		if it.err != nil {
			return request{}, badRequest("%v", it.err)
		}
		return request{items: []item{it}}, nil
	case contentCloudEventBatch:
		elems, err := splitArray(body)
		if err != nil {
			return request{}, err
		}
		req := request{batch: true}
		for _, e := range elems {
			req.items = append(req.items, decodeCloudEvent(e))
		}
		return req, nil
	}
	if ct == "" {
		ct = "none"
	}
	return request{}, &requestError{http.StatusUnsupportedMediaType, fmt.Sprintf(
		"Content-Type %s: want %s (one envelope or an array), %s (one envelope per line), %s, %s, or a CloudEvent in binary mode (ce-* headers)",
		ct, contentJSON, contentNDJSON, contentCloudEvent, contentCloudEventBatch)}
}

// decodeJSON reads one envelope or an array of them.
func decodeJSON(body []byte) (request, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		elems, err := splitArray(trimmed)
		if err != nil {
			return request{}, err
		}
		req := request{batch: true}
		for _, e := range elems {
			req.items = append(req.items, decodeEnvelope(e))
		}
		return req, nil
	}
	it := decodeEnvelope(trimmed)
	if it.err != nil {
		return request{}, badRequest("%v", it.err)
	}
	return request{items: []item{it}}, nil
}

// decodeNDJSON reads one envelope per line. A line that is not JSON at all
// stops the request: the body is garbled, and nothing in it is stored.
func decodeNDJSON(body []byte) (request, error) {
	req := request{batch: true}
	for n, line := range bytes.Split(body, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if !json.Valid(line) {
			return request{}, badRequest("line %d is not JSON: nothing was stored", n+1)
		}
		it := decodeEnvelope(line)
		it.line = n + 1
		req.items = append(req.items, it)
	}
	if len(req.items) == 0 {
		return request{}, badRequest("the body holds no event")
	}
	return req, nil
}

// splitArray splits a JSON array into its elements.
func splitArray(body []byte) ([]json.RawMessage, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(body, &elems); err != nil {
		return nil, badRequest("the body is not a JSON array of events: %v", err)
	}
	if len(elems) == 0 {
		return nil, badRequest("the body holds no event")
	}
	return elems, nil
}

func decodeEnvelope(b []byte) item {
	env, err := event.Decode(b)
	if err != nil {
		return item{err: err}
	}
	return item{env: env}
}

// invalid wraps a reason as an event.ErrInvalid.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", event.ErrInvalid, fmt.Sprintf(format, args...))
}

// isJSONMedia reports whether a datacontenttype names JSON data (absent
// means JSON in CloudEvents' JSON format).
func isJSONMedia(ct string) bool {
	if ct == "" {
		return true
	}
	media, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return media == contentJSON || media == "text/json" || strings.HasSuffix(media, "+json")
}

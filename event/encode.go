package event

import (
	"encoding/json"
	"fmt"
	"time"
)

// Format names a wire encoding of an event body.
type Format string

// Formats a sink can send.
const (
	FormatCourier     Format = "courier"
	FormatGluster     Format = "gluster"
	FormatCloudEvents Format = "cloudevents"
)

// ParseFormat accepts a configured format name; empty means courier.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case "", FormatCourier:
		return FormatCourier, nil
	case FormatGluster, FormatCloudEvents:
		return Format(s), nil
	}
	return "", fmt.Errorf("unknown format %q: want courier, gluster or cloudevents", s)
}

// Content types of the encodings.
const (
	ContentTypeJSON        = "application/json"
	ContentTypeCloudEvents = "application/cloudevents+json"
)

// glusterEvent is the body glustereventsd posts to webhooks.
type glusterEvent struct {
	NodeID  string          `json:"nodeid"`
	TS      int64           `json:"ts"`
	Event   string          `json:"event"`
	Message json.RawMessage `json:"message"`
}

// cloudEvent is a CloudEvents 1.0 structured-mode JSON event.
type cloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Time            string          `json:"time"`
	Subject         string          `json:"subject,omitempty"`
	DataContentType string          `json:"datacontenttype,omitempty"`
	Data            json.RawMessage `json:"data,omitempty"`
	// Courier's own attributes, as CloudEvents extensions (lowercase
	// alphanumerics only, per the spec).
	Level   string `json:"level,omitempty"`
	State   string `json:"state,omitempty"`
	StartID string `json:"startid,omitempty"`
	Node    string `json:"node,omitempty"`
}

// Encode renders the whole event in the given format (CloudEvents in
// structured mode) and returns the body and its content type.
func Encode(f Format, e *Envelope) ([]byte, string, error) {
	var (
		v  any
		ct = ContentTypeJSON
	)
	switch f {
	case "", FormatCourier:
		if e.encoded != nil {
			return e.encoded, ct, nil
		}
		v = e
	case FormatGluster:
		v = glusterEvent{NodeID: e.Node, TS: e.Time.Unix(), Event: e.Type, Message: dataOrEmptyObject(e.Data)}
	case FormatCloudEvents:
		ce := cloudEvent{
			SpecVersion: "1.0", ID: e.ID, Source: e.Source, Type: e.Type,
			Time: e.Time.UTC().Format(time.RFC3339Nano), Subject: e.Key,
			Level: string(e.Level), State: string(e.State), StartID: e.StartID, Node: e.Node,
		}
		if len(e.Data) > 0 {
			ce.DataContentType, ce.Data = ContentTypeJSON, e.Data
		}
		v, ct = ce, ContentTypeCloudEvents
	default:
		return nil, "", fmt.Errorf("encode event %s: unknown format %q", e.ID, f)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, "", fmt.Errorf("encode event %s as %s: %w", e.ID, f, err)
	}
	return b, ct, nil
}

// CloudEventsBinary returns the CloudEvents attributes (without a transport
// prefix) and the data for binary mode, where attributes travel as headers and
// the body is the data alone. Each transport adds its own prefix: "ce-" for
// HTTP, "cloudEvents_" for AMQP, "ce_" for Kafka.
func CloudEventsBinary(e *Envelope) (attrs map[string]string, data []byte, contentType string) {
	attrs = map[string]string{
		"specversion": "1.0",
		"id":          e.ID,
		"source":      e.Source,
		"type":        e.Type,
		"time":        e.Time.UTC().Format(time.RFC3339Nano),
	}
	for k, v := range map[string]string{"subject": e.Key, "level": string(e.Level), "state": string(e.State), "startid": e.StartID, "node": e.Node} {
		if v != "" {
			attrs[k] = v
		}
	}
	return attrs, dataOrEmptyObject(e.Data), ContentTypeJSON
}

func dataOrEmptyObject(d json.RawMessage) json.RawMessage {
	if len(d) == 0 {
		return json.RawMessage(`{}`)
	}
	return d
}

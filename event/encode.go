package event

import (
	"bytes"
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
	// Courier's own and CloudStack's attributes, as CloudEvents extensions
	// (lowercase alphanumerics only, per the spec: start_id is startid,
	// resource_id resourceid).
	Level        string `json:"level,omitempty"`
	State        string `json:"state,omitempty"`
	StartID      string `json:"startid,omitempty"`
	Node         string `json:"node,omitempty"`
	Description  string `json:"description,omitempty"`
	Account      string `json:"account,omitempty"`
	Domain       string `json:"domain,omitempty"`
	User         string `json:"user,omitempty"`
	ResourceID   string `json:"resourceid,omitempty"`
	ResourceType string `json:"resourcetype,omitempty"`
}

// cloudStackField is one of the envelope's CloudStack fields under its
// envelope (and Gluster message) name and its CloudEvents extension name.
type cloudStackField struct {
	json, ce, value string
}

// cloudStackFields lists them in envelope order, so every encoding adds
// them in the same order.
func (e *Envelope) cloudStackFields() []cloudStackField {
	return []cloudStackField{
		{"description", "description", e.Description},
		{"account", "account", e.Account},
		{"domain", "domain", e.Domain},
		{"user", "user", e.User},
		{"resource_id", "resourceid", e.ResourceID},
		{"resource_type", "resourcetype", e.ResourceType},
	}
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
		msg, err := glusterMessage(e)
		if err != nil {
			return nil, "", fmt.Errorf("encode event %s as %s: %w", e.ID, f, err)
		}
		v = glusterEvent{NodeID: e.Node, TS: e.Time.Unix(), Event: e.Type, Message: msg}
	case FormatCloudEvents:
		ce := cloudEvent{
			SpecVersion: "1.0", ID: e.ID, Source: e.Source, Type: e.Type,
			Time: e.Time.UTC().Format(time.RFC3339Nano), Subject: e.Key,
			Level: string(e.Level), State: string(e.State), StartID: e.StartID, Node: e.Node,
			Description: e.Description, Account: e.Account, Domain: e.Domain, User: e.User,
			ResourceID: e.ResourceID, ResourceType: e.ResourceType,
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
	for _, f := range e.cloudStackFields() {
		if f.value != "" {
			attrs[f.ce] = f.value
		}
	}
	return attrs, dataOrEmptyObject(e.Data), ContentTypeJSON
}

// glusterMessage is the data as Gluster's message, with the envelope's
// CloudStack fields added to it. glustereventsd's body has exactly four
// keys, and receivers that check it would refuse a fifth, so the fields go
// inside message, which is per-event free-form data already. They are added
// only when message is an object (an array or a scalar has nowhere to put
// them) and only under keys the data does not have: the producer's data is
// never changed, only extended.
func glusterMessage(e *Envelope) (json.RawMessage, error) {
	msg := dataOrEmptyObject(e.Data)
	var add []cloudStackField
	for _, f := range e.cloudStackFields() {
		if f.value != "" {
			add = append(add, f)
		}
	}
	obj := bytes.TrimSpace(msg)
	if len(add) == 0 || len(obj) == 0 || obj[0] != '{' {
		return msg, nil
	}
	var present map[string]json.RawMessage
	if err := json.Unmarshal(obj, &present); err != nil {
		return nil, fmt.Errorf("gluster message: %w", err)
	}
	// Appending to the data's own bytes keeps its keys in their order.
	out := bytes.NewBuffer(make([]byte, 0, len(obj)+256))
	out.Write(obj[:len(obj)-1])
	comma := len(present) > 0
	for _, f := range add {
		if _, ok := present[f.json]; ok {
			continue
		}
		if comma {
			out.WriteByte(',')
		}
		comma = true
		v, err := json.Marshal(f.value)
		if err != nil {
			return nil, fmt.Errorf("gluster message %s: %w", f.json, err)
		}
		// The names are this package's constants: nothing to escape.
		out.WriteString(`"` + f.json + `":`)
		out.Write(v)
	}
	out.WriteByte('}')
	return out.Bytes(), nil
}

func dataOrEmptyObject(d json.RawMessage) json.RawMessage {
	if len(d) == 0 {
		return json.RawMessage(`{}`)
	}
	return d
}

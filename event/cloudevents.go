package event

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// FromCloudEvent builds the envelope a CloudEvent maps to: the inverse of
// Encode with FormatCloudEvents and of CloudEventsBinary, so that an event
// taken in as a CloudEvent leaves every CloudEvents sink as the same
// CloudEvent. attrs are its context attributes by name (specversion, id,
// source, type, time, subject and Courier's extensions); data is its JSON
// data, empty for none. An attribute the envelope has no place for is an
// error naming it, rather than dropped without a word.
func FromCloudEvent(attrs map[string]string, data json.RawMessage) (Envelope, error) {
	var unknown []string
	for name := range attrs {
		if !slices.Contains(cloudEventAttributes, name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return Envelope{}, fmt.Errorf("%w: CloudEvents attribute %s: Courier keeps %s", ErrInvalid,
			strings.Join(unknown, ", "), strings.Join(cloudEventAttributes, ", "))
	}
	if v := attrs["specversion"]; v != "1.0" {
		return Envelope{}, fmt.Errorf("%w: CloudEvents specversion %q: want 1.0", ErrInvalid, v)
	}
	for _, name := range []string{"id", "source", "type"} {
		if attrs[name] == "" {
			return Envelope{}, fmt.Errorf("%w: CloudEvents attribute %s is required", ErrInvalid, name)
		}
	}
	e := Envelope{
		ID: attrs["id"], Source: attrs["source"], Type: attrs["type"], Key: attrs["subject"],
		Level: Level(attrs["level"]), State: State(attrs["state"]), StartID: attrs["startid"], Node: attrs["node"],
		Description: attrs["description"], Account: attrs["account"], Domain: attrs["domain"], User: attrs["user"],
		ResourceID: attrs["resourceid"], ResourceType: attrs["resourcetype"],
	}
	if t := attrs["time"]; t != "" {
		parsed, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return Envelope{}, fmt.Errorf("%w: CloudEvents time %q: want RFC 3339, e.g. 2026-12-02T10:00:00Z", ErrInvalid, t)
		}
		e.Time = parsed
	}
	if len(data) > 0 {
		if !json.Valid(data) {
			return Envelope{}, fmt.Errorf("%w: CloudEvents data is not valid JSON", ErrInvalid)
		}
		e.Data = data
	}
	return e, nil
}

// cloudEventAttributes are the attributes Encode and CloudEventsBinary
// write, in the order the error above lists them.
var cloudEventAttributes = func() []string {
	names := []string{"specversion", "id", "source", "type", "time", "subject", "level", "state", "startid", "node"}
	for _, f := range (&Envelope{}).cloudStackFields() {
		names = append(names, f.ce)
	}
	return names
}()

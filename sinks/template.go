package sinks

import (
	"fmt"
	"strings"

	"github.com/courierhq/courier/event"
)

// Template is a parsed name template (an AMQP routing key, a Kafka
// topic): literal text and placeholders the event's fields fill. Every
// kind knows the same placeholders.
type Template []templatePart

type templatePart struct {
	literal string
	field   func(*event.Envelope) string // nil for literal text
}

// templateFields are the placeholders, in the order messages list them.
var templateFields = []struct {
	name  string
	field func(*event.Envelope) string
}{
	{"type", func(e *event.Envelope) string { return e.Type }},
	{"source", func(e *event.Envelope) string { return e.Source }},
	{"node", func(e *event.Envelope) string { return e.Node }},
	{"key", func(e *event.Envelope) string { return e.Key }},
	{"level", func(e *event.Envelope) string { return string(e.Level) }},
	{"state", func(e *event.Envelope) string { return string(e.State) }},
}

// TemplatePlaceholders lists the placeholders for documentation and
// messages: "{type}, {source}, ...".
func TemplatePlaceholders() string {
	names := make([]string, len(templateFields))
	for i, f := range templateFields {
		names[i] = "{" + f.name + "}"
	}
	return strings.Join(names, ", ")
}

// ParseTemplate parses tmpl, the value of the setting named setting, once,
// so that a typo such as "{tpye}" is a configuration error and not a
// literal name nothing matches.
func ParseTemplate(setting, tmpl string) (Template, error) {
	var t Template
	rest := tmpl
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if shut := strings.IndexByte(rest, '}'); shut >= 0 && (open < 0 || shut < open) {
			return nil, fmt.Errorf("%s %q: '}' without '{'", setting, tmpl)
		}
		if open < 0 {
			t = append(t, templatePart{literal: rest})
			break
		}
		if open > 0 {
			t = append(t, templatePart{literal: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("%s %q: '{' without '}'", setting, tmpl)
		}
		name := rest[open+1 : open+end]
		i := 0
		for i < len(templateFields) && templateFields[i].name != name {
			i++
		}
		if i == len(templateFields) {
			return nil, fmt.Errorf("%s %q: unknown placeholder {%s} (known: %s)", setting, tmpl, name, TemplatePlaceholders())
		}
		t = append(t, templatePart{field: templateFields[i].field})
		rest = rest[open+end+1:]
	}
	return t, nil
}

// Literals returns the template's literal text, for kinds that restrict
// the characters of a name.
func (t Template) Literals() []string {
	var out []string
	for _, p := range t {
		if p.field == nil {
			out = append(out, p.literal)
		}
	}
	return out
}

// Render fills the template with e's fields.
func (t Template) Render(e *event.Envelope) string {
	var b strings.Builder
	for _, p := range t {
		if p.field != nil {
			b.WriteString(p.field(e))
		} else {
			b.WriteString(p.literal)
		}
	}
	return b.String()
}

// CloudEvents content modes (cloudevents_mode), for kinds that carry
// headers: structured puts the whole CloudEvent in the body, binary puts
// its attributes in headers and the data alone in the body.
const (
	CloudEventsStructured = "structured"
	CloudEventsBinary     = "binary"
)

// CloudEventsMode returns mode with its default filled in.
func CloudEventsMode(mode string) string {
	if mode == "" {
		return CloudEventsStructured
	}
	return mode
}

// ValidateCloudEventsMode checks a cloudevents_mode setting.
func ValidateCloudEventsMode(mode string) error {
	if mode != CloudEventsStructured && mode != CloudEventsBinary {
		return fmt.Errorf("cloudevents_mode %q: want %s or %s", mode, CloudEventsStructured, CloudEventsBinary)
	}
	return nil
}

package sinks_test

import (
	"strings"
	"testing"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/sinks"
)

type namedKind struct {
	sinks.Kind
	name, tag string
}

func (k namedKind) Name() string { return k.name }

func TestKindsWithReplacesByNameAndAppendsTheRest(t *testing.T) {
	base := sinks.Kinds{namedKind{name: "webhook"}, namedKind{name: "handler", tag: "no functions"}}
	got := base.With(namedKind{name: "handler", tag: "the program's"}, namedKind{name: "memory"})
	if names := got.Names(); names != "webhook, handler or memory" {
		t.Errorf("Names = %q", names)
	}
	if k, ok := got.Lookup("handler"); !ok || k.(namedKind).tag != "the program's" {
		t.Errorf("Lookup(handler) = %v, %v; want the replacement", k, ok)
	}
	if k, _ := base.Lookup("handler"); k.(namedKind).tag != "no functions" {
		t.Error("With changed the list it was called on")
	}
	if _, ok := got.Lookup("smtp"); ok {
		t.Error("Lookup found a kind nobody passed")
	}
}

func TestTemplateFillsEveryPlaceholderAndRefusesTypos(t *testing.T) {
	tmpl, err := sinks.ParseTemplate("topic", "gluster.{source}.{node}.{key}.{type}.{level}.{state}!")
	if err != nil {
		t.Fatal(err)
	}
	e := &event.Envelope{Type: "VOLUME_SET", Source: "gluster", Node: "n1", Key: "gv0", Level: event.LevelInfo, State: event.StateCompleted}
	if got, want := tmpl.Render(e), "gluster.gluster.n1.gv0.VOLUME_SET.INFO.Completed!"; got != want {
		t.Errorf("Render = %q, want %q", got, want)
	}
	for tmpl, want := range map[string]string{
		"{tpye}":    "unknown placeholder {tpye} (known: {type}, {source}, {node}, {key}, {level}, {state})",
		"a.{type":   "'{' without '}'",
		"a}.{type}": "'}' without '{'",
	} {
		if _, err := sinks.ParseTemplate("routing_key", tmpl); err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "routing_key ") {
			t.Errorf("ParseTemplate(%q) = %v, want the setting named and %q", tmpl, err, want)
		}
	}
}

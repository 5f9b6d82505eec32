package sinks

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/netguard"
)

// Kind is one kind of sink: what a definition's type: names. A kind
// declares the settings of its own a definition holds and builds a sink
// from them; the configuration decodes and validates definitions through
// it, so adding a kind touches its package and the list the program
// passes (see package sinks/builtin), nothing else.
type Kind interface {
	// Name is the value of type: that selects the kind.
	Name() string
	// NewSettings returns a pointer to the kind's zero settings. A
	// definition's keys other than the common ones (name, events, retry,
	// ...) are decoded into it strictly, then its defaults are filled and
	// it is validated.
	NewSettings() Settings
	// New builds a sink from settings NewSettings returned, decoded and
	// validated.
	New(s Settings, env Env) (Sink, error)
}

// Settings is a kind's own part of a sink's configuration.
type Settings interface {
	// Target is where the sink delivers, safe to show (no credentials).
	Target() string
	// AttemptTimeout is how long one Send may take.
	AttemptTimeout() time.Duration
	// SetDefaults fills the optional fields a definition left out.
	SetDefaults()
	// Validate reports settings the kind cannot work with. Its errors
	// never contain a secret.
	Validate() error
}

// Env is what the worker gives every sink it builds, whatever the kind.
type Env struct {
	// Format and Concurrency are the definition's common settings.
	Format      event.Format
	Concurrency int
	// Version is the worker's, for User-Agent headers and the like.
	Version string
	// TracerProvider records a span per Send; nil records none.
	TracerProvider trace.TracerProvider
	// Guard is what the node's outgoing connections may reach (webhooks
	// apply it to every request).
	Guard *netguard.Guard
}

// PolicedURL is implemented by settings whose destination is a URL the
// node's network policy (webhook_allow, webhook-https-only) applies to: a
// literal address in a refused range is an error when the sink is
// defined, and each request is checked again when it connects.
type PolicedURL interface {
	PolicedURL() string
}

// NoTestEvents is implemented by kinds that must not be sent a synthetic
// test event (worker sinks test): it says why.
type NoTestEvents interface {
	NoTestEvents() string
}

// Kinds is the list of kinds a program knows, in the order messages name
// them.
type Kinds []Kind

// Lookup returns the kind named name.
func (ks Kinds) Lookup(name string) (Kind, bool) {
	i := slices.IndexFunc(ks, func(k Kind) bool { return k.Name() == name })
	if i < 0 {
		return nil, false
	}
	return ks[i], true
}

// With returns the list with more added; one named as a kind already in
// the list replaces it (a program's own handler kind replaces the one
// without functions, for example).
func (ks Kinds) With(more ...Kind) Kinds {
	out := slices.Clone(ks)
	for _, k := range more {
		if i := slices.IndexFunc(out, func(o Kind) bool { return o.Name() == k.Name() }); i >= 0 {
			out[i] = k
		} else {
			out = append(out, k)
		}
	}
	return out
}

// Names lists the kinds' names for messages: "webhook, amqp or kafka".
func (ks Kinds) Names() string {
	names := make([]string, len(ks))
	for i, k := range ks {
		names[i] = k.Name()
	}
	switch len(names) {
	case 0:
		return "none is known"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// SettingsOf returns s as the kind's settings type T, or an error naming
// the kind when a caller passed another kind's.
func SettingsOf[T any](kind string, s Settings) (T, error) {
	t, ok := s.(T)
	if !ok {
		var zero T
		return zero, fmt.Errorf("%s sink: settings of type %T, want %T", kind, s, zero)
	}
	return t, nil
}

// Construct is what a kind's New does around its own constructor: it
// checks the settings are the kind's (C), builds, and keeps a failed
// constructor's nil sink from becoming a non-nil Sink.
func Construct[C Settings, S Sink](kind string, s Settings, build func(C) (S, error)) (Sink, error) {
	c, err := SettingsOf[C](kind, s)
	if err != nil {
		return nil, err
	}
	sink, err := build(c)
	if err != nil {
		return nil, err
	}
	return sink, nil
}

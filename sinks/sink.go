// Package sinks defines what a delivery target is to Courier: something that
// sends one event and says, through a classified error (package retry),
// whether a failure is worth retrying. Sinks never retry on their own; the
// delivery loop decides. One sub-package per kind implements it and
// declares itself as a Kind (its settings, their defaults and validation,
// its constructor); what kinds share (TLS settings, name templates,
// CloudEvents modes) is written here once.
package sinks

import (
	"context"
	"fmt"
	"regexp"

	"github.com/courierhq/courier/event"
)

// Sink sends events to one destination.
type Sink interface {
	// Send delivers one event and returns nil only once the destination
	// confirmed it. A failure is a *retry.Error (or is treated as
	// retryable).
	Send(ctx context.Context, e *event.Envelope) error
	// Close releases connections; Send is not called after it.
	Close(ctx context.Context) error
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidateName checks a sink name: it becomes part of consumer names and
// subjects, so it must be a single subject token.
func ValidateName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("sink name %q: use 1 to 64 letters, digits, '_' or '-'", name)
	}
	return nil
}

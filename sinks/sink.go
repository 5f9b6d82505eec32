// Package sinks defines what a delivery target is to Courier: something that
// sends one event and says, through a classified error (package retry),
// whether a failure is worth retrying. Sinks never retry on their own; the
// delivery loop decides. One sub-package per kind implements it.
package sinks

import (
	"context"
	"fmt"
	"regexp"
	"time"

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

// Settings is a kind's own part of a sink's configuration, with defaults
// filled in.
type Settings interface {
	// Target is where the sink delivers, safe to show (no credentials).
	Target() string
	// AttemptTimeout is how long one Send may take.
	AttemptTimeout() time.Duration
	// Validate reports settings the kind cannot work with.
	Validate() error
}

// Kinds of sink Courier knows.
const (
	KindWebhook = "webhook"
	KindAMQP    = "amqp"
	KindKafka   = "kafka"
	// KindHandler is a Go function of the program that embeds the worker.
	KindHandler = "handler"
)

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidateName checks a sink name: it becomes part of consumer names and
// subjects, so it must be a single subject token.
func ValidateName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("sink name %q: use 1 to 64 letters, digits, '_' or '-'", name)
	}
	return nil
}

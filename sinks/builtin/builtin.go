// Package builtin lists the sink kinds Courier ships, for the program's
// composition root to pass to the configuration: there is no registry a
// package adds itself to, so the kinds a program knows are the ones it
// names.
package builtin

import (
	"github.com/courierhq/courier/sinks"
	"github.com/courierhq/courier/sinks/amqp"
	"github.com/courierhq/courier/sinks/handler"
	"github.com/courierhq/courier/sinks/kafka"
	"github.com/courierhq/courier/sinks/webhook"
)

// Kinds returns webhook, amqp, kafka and handler (without functions),
// then more: a kind of the program's own, or a handler kind with its
// functions, which replaces the one without.
func Kinds(more ...sinks.Kind) sinks.Kinds {
	return sinks.Kinds{webhook.Kind{}, amqp.Kind{}, kafka.Kind{}, handler.NewKind(nil)}.With(more...)
}

package handler

import (
	"github.com/courierhq/courier/sinks"
)

// Funcs are a program's functions by the name sinks of type handler give.
type Funcs map[string]Func

// Kind is the handler kind of sink (type: handler), holding the program's
// functions.
type Kind struct{ funcs Funcs }

// NewKind returns the kind that calls funcs. With none, handler sinks
// still parse (a cluster's other nodes may define them) but do not start.
// Register the same names on every node.
func NewKind(funcs Funcs) Kind { return Kind{funcs: funcs} }

// Name is what type: says.
func (Kind) Name() string { return "handler" }

// NewSettings returns empty settings to decode a definition into.
func (Kind) NewSettings() sinks.Settings { return &Config{} }

// New builds a sink calling the function the settings name, or fails with
// ErrNotRegistered.
func (k Kind) New(s sinks.Settings, env sinks.Env) (sinks.Sink, error) {
	return sinks.Construct("handler", s, func(cfg *Config) (*Sink, error) {
		var opts []Option
		if env.TracerProvider != nil {
			opts = append(opts, WithTracerProvider(env.TracerProvider))
		}
		return New(*cfg, k.funcs[cfg.Handler], opts...)
	})
}

// NoTestEvents says why worker sinks test sends a handler sink nothing.
func (Kind) NoTestEvents() string {
	return "a handler sink is not sent test events: one would reach the program's own function"
}

// SetDefaults fills the optional fields.
func (c *Config) SetDefaults() { *c = c.WithDefaults() }

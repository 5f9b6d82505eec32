package amqp

import "github.com/courierhq/courier/sinks"

// Kind is the AMQP 0-9-1 kind of sink (type: amqp).
type Kind struct{}

// Name is what type: says.
func (Kind) Name() string { return "amqp" }

// NewSettings returns empty settings to decode a definition into.
func (Kind) NewSettings() sinks.Settings { return &Config{} }

// New builds an AMQP sink; it connects on its first Send.
func (Kind) New(s sinks.Settings, env sinks.Env) (sinks.Sink, error) {
	return sinks.Construct("amqp", s, func(cfg *Config) (*Sink, error) {
		var opts []Option
		if env.TracerProvider != nil {
			opts = append(opts, WithTracerProvider(env.TracerProvider))
		}
		return New(*cfg, env.Format, env.Concurrency, env.Version, opts...)
	})
}

// SetDefaults fills the optional fields.
func (c *Config) SetDefaults() { *c = c.WithDefaults() }

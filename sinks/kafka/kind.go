package kafka

import "github.com/courierhq/courier/sinks"

// Kind is the Kafka kind of sink (type: kafka).
type Kind struct{}

// Name is what type: says.
func (Kind) Name() string { return "kafka" }

// NewSettings returns empty settings to decode a definition into.
func (Kind) NewSettings() sinks.Settings { return &Config{} }

// New builds a Kafka sink; it connects on its first Send.
func (Kind) New(s sinks.Settings, env sinks.Env) (sinks.Sink, error) {
	return sinks.Construct("kafka", s, func(cfg *Config) (*Sink, error) {
		var opts []Option
		if env.TracerProvider != nil {
			opts = append(opts, WithTracerProvider(env.TracerProvider))
		}
		return New(*cfg, env.Format, env.Concurrency, env.Version, opts...)
	})
}

// SetDefaults fills the optional fields.
func (c *Config) SetDefaults() { *c = c.WithDefaults() }

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
	cfg, err := sinks.SettingsOf[*Config]("kafka", s)
	if err != nil {
		return nil, err
	}
	var opts []Option
	if env.TracerProvider != nil {
		opts = append(opts, WithTracerProvider(env.TracerProvider))
	}
	sink, err := New(*cfg, env.Format, env.Concurrency, env.Version, opts...)
	if err != nil {
		return nil, err
	}
	return sink, nil
}

// SetDefaults fills the optional fields.
func (c *Config) SetDefaults() { *c = c.WithDefaults() }

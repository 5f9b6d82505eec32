package webhook

import "github.com/courierhq/courier/sinks"

// Kind is the webhook kind of sink (type: webhook).
type Kind struct{}

// Name is what type: says.
func (Kind) Name() string { return "webhook" }

// NewSettings returns empty settings to decode a definition into.
func (Kind) NewSettings() sinks.Settings { return &Config{} }

// New builds a webhook sink that applies env's network guard to every
// connection.
func (Kind) New(s sinks.Settings, env sinks.Env) (sinks.Sink, error) {
	return sinks.Construct("webhook", s, func(cfg *Config) (*Sink, error) {
		opts := []Option{WithGuard(env.Guard)}
		if env.TracerProvider != nil {
			opts = append(opts, WithTracerProvider(env.TracerProvider))
		}
		return New(*cfg, env.Format, env.Concurrency, env.Version, opts...)
	})
}

// SetDefaults fills the optional fields.
func (c *Config) SetDefaults() { *c = c.WithDefaults() }

// PolicedURL is the URL the node's webhook_allow and webhook-https-only
// settings apply to.
func (c Config) PolicedURL() string { return c.URL }

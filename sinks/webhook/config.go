package webhook

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/courierhq/courier/sinks"
)

// Config is a webhook sink's own part of its configuration.
type Config struct {
	// URL receives a POST per event.
	URL string `yaml:"url"`
	// BearerToken, when set, is sent as "Authorization: Bearer <token>", as
	// Gluster's webhooks do.
	BearerToken string `yaml:"bearer_token"`
	// Secret signs each request per the Standard Webhooks spec ("whsec_" and
	// base64). Secrets lists more, for rotation: every one signs.
	Secret  string   `yaml:"secret"`
	Secrets []string `yaml:"secrets"`
	// Headers are added to every request.
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds one request, response included.
	Timeout time.Duration `yaml:"timeout"`
	// CloudEventsMode is "structured" (default) or "binary" when the format
	// is cloudevents.
	CloudEventsMode string `yaml:"cloudevents_mode"`
	// InsecureSkipVerify turns TLS verification off (test setups only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// MaxResponseBytes caps how much of a response is read.
	MaxResponseBytes int64 `yaml:"max_response_bytes"`
}

// Defaults of the optional fields.
const (
	DefaultTimeout          = 15 * time.Second
	DefaultMaxResponseBytes = 64 << 10
	// maxResponseCap bounds what one response may hold in memory.
	maxResponseCap = 64 << 20
	secretPrefix   = "whsec_"
)

// WithDefaults fills the optional fields.
func (c Config) WithDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	c.CloudEventsMode = sinks.CloudEventsMode(c.CloudEventsMode)
	return c
}

// AttemptTimeout is the timeout: one Send takes no longer.
func (c Config) AttemptTimeout() time.Duration { return c.Timeout }

// Validate checks the configuration once, before any event is sent.
func (c Config) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q: want an absolute http:// or https:// URL", redactURL(c.URL))
	}
	if c.Timeout < 0 {
		return fmt.Errorf("timeout must be positive, got %s", c.Timeout)
	}
	if c.MaxResponseBytes < 0 || c.MaxResponseBytes > maxResponseCap {
		return fmt.Errorf("max_response_bytes %d: want from 0 (the default, %d) to %d", c.MaxResponseBytes, DefaultMaxResponseBytes, maxResponseCap)
	}
	if err := sinks.ValidateCloudEventsMode(c.CloudEventsMode); err != nil {
		return err
	}
	if _, err := c.signingKeys(); err != nil {
		return err
	}
	for name, value := range c.Headers {
		if !headerName.MatchString(name) {
			return fmt.Errorf("header name %q is not a valid HTTP header name", name)
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return fmt.Errorf("header %s: value must not contain line breaks or NUL", name)
		}
	}
	return nil
}

// headerName is an RFC 9110 token.
var headerName = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$")

// signingKeys decodes the configured secrets. Errors never echo the secret.
func (c Config) signingKeys() ([][]byte, error) {
	all := c.Secrets
	if c.Secret != "" {
		all = append([]string{c.Secret}, all...)
	}
	keys := make([][]byte, 0, len(all))
	for i, s := range all {
		k, err := DecodeSecret(s)
		if err != nil {
			return nil, fmt.Errorf("secret #%d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// DecodeSecret returns the signing key of a "whsec_<base64>" secret. Its
// error never contains the secret.
func DecodeSecret(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, secretPrefix))
	if err != nil || len(k) == 0 {
		return nil, fmt.Errorf("want %q followed by base64", secretPrefix)
	}
	return k, nil
}

// redactURL drops the credentials and query (where tokens often travel) of a
// URL for logs, errors and spans.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery = nil, ""
	return u.String()
}

// Target is where the sink delivers, safe to show: no credentials or query.
func (c Config) Target() string { return redactURL(c.URL) }

package amqp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/courierhq/courier/event"
)

// Config is an AMQP sink's own part of its configuration.
type Config struct {
	// URL is the broker, amqp:// or amqps://, with credentials and vhost
	// ("amqp://user:pass@host:5672/vhost"). Put the password in the YAML as
	// ${ENV}; it never appears in an error (see redactedURL).
	URL string `yaml:"url"`
	// Exchange receives every event. It is required: the default exchange
	// ("") routes by queue name, which would make the routing key a queue
	// name and bypass the bindings operators manage.
	Exchange string `yaml:"exchange"`
	// ExchangeType is the type Declare declares: topic (default), direct,
	// fanout, headers or a plugin's x-... type.
	ExchangeType string `yaml:"exchange_type"`
	// Declare declares a durable exchange of ExchangeType on connect. Off,
	// the exchange must exist already (it is checked on connect).
	Declare bool `yaml:"declare"`
	// RoutingKey is a template: {type}, {source}, {node}, {key}, {level} and
	// {state} are replaced by the event's fields. Default "{type}".
	RoutingKey string `yaml:"routing_key"`
	// CloudEventsMode is "structured" (default) or "binary" when the format
	// is cloudevents.
	CloudEventsMode string `yaml:"cloudevents_mode"`
	// Mandatory (default true) makes an event no queue is bound for a
	// failure instead of a message the broker silently drops.
	Mandatory *bool `yaml:"mandatory"`
	// Timeout bounds one Send: connecting when needed, publishing, and
	// waiting for the broker's confirm.
	Timeout time.Duration `yaml:"timeout"`
	// TLS configures amqps:// connections.
	TLS TLSConfig `yaml:"tls"`
}

// TLSConfig is the client side of an amqps:// connection.
type TLSConfig struct {
	// CAFile holds the PEM certificates that sign the broker's certificate,
	// instead of the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate, for brokers that
	// require one.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify turns certificate verification off (test setups
	// only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

func (t TLSConfig) isSet() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.InsecureSkipVerify
}

// Defaults of the optional fields.
const (
	DefaultTimeout      = 15 * time.Second
	DefaultExchangeType = "topic"
	DefaultRoutingKey   = "{type}"
)

// maxShortString is the AMQP 0-9-1 limit of exchange names and routing keys.
const maxShortString = 255

// WithDefaults fills the optional fields.
func (c Config) WithDefaults() Config {
	if c.ExchangeType == "" {
		c.ExchangeType = DefaultExchangeType
	}
	if c.RoutingKey == "" {
		c.RoutingKey = DefaultRoutingKey
	}
	if c.CloudEventsMode == "" {
		c.CloudEventsMode = "structured"
	}
	if c.Mandatory == nil {
		yes := true
		c.Mandatory = &yes
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// mandatory reads Mandatory with its default, so a Config that skipped
// WithDefaults still refuses to drop unroutable events.
func (c Config) mandatory() bool { return c.Mandatory == nil || *c.Mandatory }

// AttemptTimeout is the timeout: one Send takes no longer.
func (c Config) AttemptTimeout() time.Duration { return c.Timeout }

// Validate checks the configuration once, before any event is sent. Its
// errors never contain the URL's password.
func (c Config) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil {
		// url.Parse's error quotes the whole URL, password included, so it
		// is deliberately not wrapped.
		return errors.New("url: not a valid URL (a password with reserved characters such as '@', ':', '/' or '?' must be percent-encoded)")
	}
	if (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Host == "" {
		return fmt.Errorf("url %s: want amqp://host or amqps://host", c.redactedURL())
	}
	// What the library will make of it (port, vhost, query options). Its
	// errors never quote the URL once url.Parse accepted it.
	if _, err := amqp091.ParseURI(c.URL); err != nil {
		return fmt.Errorf("url %s: %w", c.redactedURL(), err)
	}
	if c.Exchange == "" {
		return errors.New("exchange is required (the default exchange \"\" is not supported: it routes by queue name)")
	}
	if len(c.Exchange) > maxShortString {
		return fmt.Errorf("exchange %q: at most %d bytes", c.Exchange, maxShortString)
	}
	if c.Declare && strings.HasPrefix(c.Exchange, "amq.") {
		// The broker refuses to declare these (403); they exist already.
		return fmt.Errorf("exchange %q: names starting with \"amq.\" are reserved; set declare: false to publish to a built-in exchange", c.Exchange)
	}
	switch c.ExchangeType {
	case "direct", "fanout", "topic", "headers":
	default:
		if !strings.HasPrefix(c.ExchangeType, "x-") {
			return fmt.Errorf("exchange_type %q: want topic, direct, fanout, headers or a plugin's x-... type", c.ExchangeType)
		}
	}
	if _, err := parseRoutingKey(c.RoutingKey); err != nil {
		return err
	}
	if c.CloudEventsMode != "structured" && c.CloudEventsMode != "binary" {
		return fmt.Errorf("cloudevents_mode %q: want structured or binary", c.CloudEventsMode)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("timeout must be positive, got %s", c.Timeout)
	}
	if c.TLS.isSet() && u.Scheme != "amqps" {
		return fmt.Errorf("tls is set but url %s is not amqps://: the connection would not be encrypted", c.redactedURL())
	}
	if _, err := c.tlsConfig(); err != nil {
		return err
	}
	return nil
}

// redactedURL is the URL as messages may show it: the password replaced by
// "xxxxx".
func (c Config) redactedURL() string {
	u, err := url.Parse(c.URL)
	if err != nil {
		return "(invalid url)"
	}
	return u.Redacted()
}

// tlsConfig builds the client TLS configuration, or nil when the library's
// default (system roots, server name from the URL) does.
func (c Config) tlsConfig() (*tls.Config, error) {
	if !c.TLS.isSet() {
		return nil, nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: c.TLS.InsecureSkipVerify, //nolint:gosec // opt-in for test setups, documented
	}
	if c.TLS.CAFile != "" {
		pem, err := os.ReadFile(c.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s: no PEM certificate in it", c.TLS.CAFile)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return nil, errors.New("tls: cert_file and key_file go together")
	}
	if c.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// routingKey is a parsed routing_key template: literal text and the fields
// that fill the placeholders between it.
type routingKey []keyPart

type keyPart struct {
	literal string
	field   func(*event.Envelope) string // nil for a literal
}

// keyFields are the placeholders a routing key template may use.
var keyFields = map[string]func(*event.Envelope) string{
	"type":   func(e *event.Envelope) string { return e.Type },
	"source": func(e *event.Envelope) string { return e.Source },
	"node":   func(e *event.Envelope) string { return e.Node },
	"key":    func(e *event.Envelope) string { return e.Key },
	"level":  func(e *event.Envelope) string { return string(e.Level) },
	"state":  func(e *event.Envelope) string { return string(e.State) },
}

// parseRoutingKey parses a template once, so a typo such as "{tpye}" is a
// configuration error and not a literal key no binding matches.
func parseRoutingKey(tmpl string) (routingKey, error) {
	var parts routingKey
	rest := tmpl
	for rest != "" {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			parts = append(parts, keyPart{literal: rest})
			break
		}
		if rest[open] == '}' {
			return nil, fmt.Errorf("routing_key %q: '}' without '{'", tmpl)
		}
		if open > 0 {
			parts = append(parts, keyPart{literal: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("routing_key %q: '{' without '}'", tmpl)
		}
		name := rest[open+1 : open+end]
		f, ok := keyFields[name]
		if !ok {
			return nil, fmt.Errorf("routing_key %q: unknown placeholder {%s}; use {type}, {source}, {node}, {key}, {level} or {state}", tmpl, name)
		}
		parts = append(parts, keyPart{field: f})
		rest = rest[open+end+1:]
	}
	return parts, nil
}

// render fills the template with e's fields.
func (k routingKey) render(e *event.Envelope) string {
	var b strings.Builder
	for _, p := range k {
		if p.field != nil {
			b.WriteString(p.field(e))
		} else {
			b.WriteString(p.literal)
		}
	}
	return b.String()
}

// Target is where the sink delivers, safe to show: the password redacted.
func (c Config) Target() string {
	return "exchange " + strconv.Quote(c.Exchange) + " at " + c.redactedURL()
}

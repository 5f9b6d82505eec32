package amqp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/courierhq/courier/sinks"
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

// TLSConfig is the client side of an amqps:// connection: the settings
// every kind shares.
type TLSConfig = sinks.TLS

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
	c.CloudEventsMode = sinks.CloudEventsMode(c.CloudEventsMode)
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
	if _, err := sinks.ParseTemplate("routing_key", c.RoutingKey); err != nil {
		return err
	}
	if err := sinks.ValidateCloudEventsMode(c.CloudEventsMode); err != nil {
		return err
	}
	if c.Timeout < 0 {
		return fmt.Errorf("timeout must be positive, got %s", c.Timeout)
	}
	if c.TLS.IsSet() && u.Scheme != "amqps" {
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
	if !c.TLS.IsSet() {
		return nil, nil
	}
	return c.TLS.ClientConfig()
}

// Target is where the sink delivers, safe to show: the password redacted.
func (c Config) Target() string {
	return "exchange " + strconv.Quote(c.Exchange) + " at " + c.redactedURL()
}

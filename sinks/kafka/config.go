package kafka

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/sinks"
)

// Config is a Kafka sink's own part of its configuration.
type Config struct {
	// Brokers are the bootstrap brokers, host:port each; the rest of the
	// cluster is learnt from their metadata.
	Brokers []string `yaml:"brokers"`
	// Topic names the topic of each event, with placeholders {type},
	// {source}, {node}, {key}, {level} and {state} taken from the event.
	Topic string `yaml:"topic"`
	// Key chooses the message key: "event_key" (the event's key, or its id
	// when it has none) or "event_id". Messages with one key go to one
	// partition, so the key is what keeps events in order.
	Key string `yaml:"key"`
	// Compression is none, gzip, snappy, lz4 or zstd.
	Compression string `yaml:"compression"`
	// BatchSize caps the events sent to a partition in one request.
	BatchSize int `yaml:"batch_size"`
	// BatchTimeout is how long a send waits for other sends to join its
	// batch. Each Send waits for its batch, so this adds to every event's
	// latency: keep it small.
	BatchTimeout time.Duration `yaml:"batch_timeout"`
	// Timeout bounds one Send, the broker's acknowledgement included.
	Timeout time.Duration `yaml:"timeout"`
	// CloudEventsMode is "structured" (default) or "binary" when the format
	// is cloudevents.
	CloudEventsMode string `yaml:"cloudevents_mode"`
	// TLS, when present, turns TLS on (system roots unless ca_file is set).
	TLS *TLSConfig `yaml:"tls"`
	// SASL, when present, authenticates every connection.
	SASL *SASLConfig `yaml:"sasl"`
}

// TLSConfig sets up TLS to the brokers: the settings every kind shares.
type TLSConfig = sinks.TLS

// SASLConfig authenticates to the brokers. Write the password as ${NAME}
// so it comes from the environment; it never appears in logs or errors.
type SASLConfig struct {
	// Mechanism is plain, scram-sha-256 or scram-sha-512.
	Mechanism string `yaml:"mechanism"`
	// Username and Password are the credentials (write the password as
	// ${NAME}).
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// Message key choices.
const (
	KeyEventKey = "event_key"
	KeyEventID  = "event_id"
)

// SASL mechanisms.
const (
	MechanismPlain       = "plain"
	MechanismSCRAMSHA256 = "scram-sha-256"
	MechanismSCRAMSHA512 = "scram-sha-512"
)

// Defaults of the optional fields.
const (
	DefaultBatchSize = 100
	// DefaultBatchTimeout is short because a single Send waits for its
	// batch: concurrent sends still share a request, a lone send is hardly
	// delayed.
	DefaultBatchTimeout = 2 * time.Millisecond
	DefaultTimeout      = 15 * time.Second
	// maxTopicLength is Kafka's own limit on topic names.
	maxTopicLength = 249
)

// WithDefaults fills the optional fields.
func (c Config) WithDefaults() Config {
	if c.Key == "" {
		c.Key = KeyEventKey
	}
	if c.Compression == "" {
		c.Compression = "none"
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = DefaultBatchTimeout
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	c.CloudEventsMode = sinks.CloudEventsMode(c.CloudEventsMode)
	return c
}

// AttemptTimeout is the timeout: one Send takes no longer.
func (c Config) AttemptTimeout() time.Duration { return c.Timeout }

// Validate checks the configuration once, before any event is sent. It does
// not contact the brokers: the worker must start while Kafka is down. No
// error it returns contains the SASL password.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("brokers: at least one host:port is required")
	}
	for _, b := range c.Brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" {
			return fmt.Errorf("broker %q: want host:port", b)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("broker %q: port must be 1 to 65535", b)
		}
	}
	if _, err := parseTopic(c.Topic); err != nil {
		return err
	}
	if c.Key != KeyEventKey && c.Key != KeyEventID {
		return fmt.Errorf("key %q: want %s or %s", c.Key, KeyEventKey, KeyEventID)
	}
	if _, err := compression(c.Compression); err != nil {
		return err
	}
	if c.BatchSize < 1 || c.BatchSize > 1_000_000 {
		return fmt.Errorf("batch_size %d: want 1 to 1000000", c.BatchSize)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("timeout must be positive, got %s", c.Timeout)
	}
	// Every Send waits up to batch_timeout before its request even leaves,
	// so a batch_timeout at or past the timeout would fail every lone send.
	if c.BatchTimeout <= 0 || c.BatchTimeout >= c.Timeout {
		return fmt.Errorf("batch_timeout %s: want positive and below timeout (%s)", c.BatchTimeout, c.Timeout)
	}
	if err := sinks.ValidateCloudEventsMode(c.CloudEventsMode); err != nil {
		return err
	}
	if c.TLS != nil {
		if err := c.TLS.Validate(); err != nil {
			return err
		}
	}
	if s := c.SASL; s != nil {
		switch s.Mechanism {
		case MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
		default:
			return fmt.Errorf("sasl.mechanism %q: want %s, %s or %s", s.Mechanism, MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512)
		}
		if s.Username == "" {
			return errors.New("sasl.username is required")
		}
		if s.Password == "" {
			return errors.New("sasl.password is required (write it as ${NAME} to take it from the environment)")
		}
	}
	return nil
}

const redacted = "[redacted]"

// String keeps the password out of anything that prints the configuration
// with fmt (%v, %+v, %s), nested in Config included.
func (s SASLConfig) String() string {
	return fmt.Sprintf("{mechanism:%s username:%s password:%s}", s.Mechanism, s.Username, redacted)
}

// GoString does the same for %#v.
func (s SASLConfig) GoString() string {
	return fmt.Sprintf("kafka.SASLConfig{Mechanism:%q, Username:%q, Password:%q}", s.Mechanism, s.Username, redacted)
}

// LogValue does the same for slog.
func (s SASLConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.String("mechanism", s.Mechanism), slog.String("username", s.Username),
		slog.String("password", redacted))
}

// MarshalJSON does the same for encoding/json, which slog's JSON handler
// uses for a Config it is given.
func (s SASLConfig) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(map[string]string{"mechanism": s.Mechanism, "username": s.Username, "password": redacted})
	if err != nil {
		return nil, fmt.Errorf("encode sasl settings: %w", err)
	}
	return b, nil
}

// topicTemplate is a parsed topic setting.
type topicTemplate struct{ sinks.Template }

// parseTopic checks the topic template: known placeholders only, and
// literal text made of the characters Kafka allows in a topic name, so a
// typo fails at startup rather than on every event.
func parseTopic(s string) (topicTemplate, error) {
	if s == "" {
		return topicTemplate{}, errors.New("topic is required")
	}
	t, err := sinks.ParseTemplate("topic", s)
	if err != nil {
		return topicTemplate{}, err
	}
	for _, lit := range t.Literals() {
		if !validTopicChars(lit) {
			return topicTemplate{}, fmt.Errorf("topic %q: a Kafka topic name holds only letters, digits, '.', '_' and '-'", s)
		}
	}
	return topicTemplate{t}, nil
}

// render returns the topic of e; a placeholder may bring characters Kafka
// refuses, so the result is checked.
func (t topicTemplate) render(e *event.Envelope) (string, error) {
	name := t.Render(e)
	switch {
	case name == "", name == ".", name == "..":
		return "", fmt.Errorf("event %s: topic %q is not a valid Kafka topic name", e.ID, name)
	case len(name) > maxTopicLength:
		return "", fmt.Errorf("event %s: topic %q is longer than Kafka's %d characters", e.ID, name, maxTopicLength)
	case !validTopicChars(name):
		return "", fmt.Errorf("event %s: topic %q: a Kafka topic name holds only letters, digits, '.', '_' and '-'", e.ID, name)
	}
	return name, nil
}

func validTopicChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Target is where the sink delivers (brokers hold no credentials here).
func (c Config) Target() string { return "topic " + c.Topic + " at " + strings.Join(c.Brokers, ",") }

package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/courierhq/courier/event"
)

// Config is a Kafka sink's own part of its configuration.
type Config struct {
	// Brokers are the bootstrap brokers, host:port each; the rest of the
	// cluster is learnt from their metadata.
	Brokers []string `yaml:"brokers"`
	// Topic names the topic of each event, with placeholders {type},
	// {source}, {node}, {level} and {state} taken from the event.
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

// TLSConfig sets up TLS to the brokers.
type TLSConfig struct {
	// CAFile is a PEM bundle of the CAs that sign the brokers' certificates.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// brokers that authenticate clients by certificate.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify turns certificate verification off (test setups
	// only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// SASLConfig authenticates to the brokers. Write the password as ${NAME}
// so it comes from the environment; it never appears in logs or errors.
type SASLConfig struct {
	// Mechanism is plain, scram-sha-256 or scram-sha-512.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
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
	if c.CloudEventsMode == "" {
		c.CloudEventsMode = "structured"
	}
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
	if c.CloudEventsMode != "structured" && c.CloudEventsMode != "binary" {
		return fmt.Errorf("cloudevents_mode %q: want structured or binary", c.CloudEventsMode)
	}
	if t := c.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		return errors.New("tls: cert_file and key_file go together")
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

// tlsConfig reads the files the TLS settings name.
func (t *TLSConfig) tlsConfig() (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in for test setups, documented
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s: no PEM certificate in it", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file/key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// topicTemplate is a parsed topic setting: literal text and placeholders.
type topicTemplate []topicPart

type topicPart struct {
	literal string
	field   func(*event.Envelope) string // nil for literal text
}

var placeholders = map[string]func(*event.Envelope) string{
	"type":   func(e *event.Envelope) string { return e.Type },
	"source": func(e *event.Envelope) string { return e.Source },
	"node":   func(e *event.Envelope) string { return e.Node },
	"level":  func(e *event.Envelope) string { return string(e.Level) },
	"state":  func(e *event.Envelope) string { return string(e.State) },
}

// parseTopic checks the topic template: known placeholders only, and
// literal text made of the characters Kafka allows in a topic name, so a
// typo fails at startup rather than on every event.
func parseTopic(s string) (topicTemplate, error) {
	if s == "" {
		return nil, errors.New("topic is required")
	}
	var t topicTemplate
	rest := s
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if shut := strings.IndexByte(rest, '}'); shut >= 0 && (open < 0 || shut < open) {
			return nil, fmt.Errorf("topic %q: '}' without '{'", s)
		}
		if open < 0 {
			t = append(t, topicPart{literal: rest})
			break
		}
		if open > 0 {
			t = append(t, topicPart{literal: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("topic %q: '{' without '}'", s)
		}
		name := rest[open+1 : open+end]
		f, ok := placeholders[name]
		if !ok {
			return nil, fmt.Errorf("topic %q: unknown placeholder {%s} (known: {type}, {source}, {node}, {level}, {state})", s, name)
		}
		t = append(t, topicPart{field: f})
		rest = rest[open+end+1:]
	}
	for _, p := range t {
		if p.field == nil && !validTopicChars(p.literal) {
			return nil, fmt.Errorf("topic %q: a Kafka topic name holds only letters, digits, '.', '_' and '-'", s)
		}
	}
	return t, nil
}

// render returns the topic of e; a placeholder may bring characters Kafka
// refuses, so the result is checked.
func (t topicTemplate) render(e *event.Envelope) (string, error) {
	var b strings.Builder
	for _, p := range t {
		if p.field != nil {
			b.WriteString(p.field(e))
		} else {
			b.WriteString(p.literal)
		}
	}
	name := b.String()
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

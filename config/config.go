package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/courierhq/courier/delivery/breaker"
	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/netguard"
	"github.com/courierhq/courier/retry"
	"github.com/courierhq/courier/sinks"
)

// File is the worker's configuration.
type File struct {
	// NodeID names this node in events and dead letters (default: host name).
	NodeID string `yaml:"node_id"`
	// DataDir holds the embedded outbox's files.
	DataDir string `yaml:"data_dir"`
	// SpoolDir is the producers' spool the worker sends on to the outbox
	// (default: spool under data_dir); point emit's COURIER_SPOOL at it.
	SpoolDir string `yaml:"spool_dir"`
	Log      Log    `yaml:"log"`
	Outbox   Outbox `yaml:"outbox"`
	Admin    Admin  `yaml:"admin"`
	// Cluster joins this node's embedded outbox to others' (absent: one
	// node on its own).
	Cluster Cluster `yaml:"cluster"`
	// EventLog keeps every event and delivery attempt, queryable.
	EventLog EventLog `yaml:"event_log"`
	// Ingest takes events over HTTP.
	Ingest Ingest `yaml:"ingest"`
	// WebhookAllow lists the networks webhooks may reach although they are
	// loopback, private, link-local or otherwise not public (default:
	// none); WebhookHTTPSOnly refuses http:// webhooks. Both are the base
	// of the webhook-allow and webhook-https-only settings.
	WebhookAllow     []string `yaml:"webhook_allow"`
	WebhookHTTPSOnly bool     `yaml:"webhook_https_only"`
	// Secrets limits what sinks defined at run time may read.
	Secrets Secrets `yaml:"secrets"`
	// ShutdownTimeout bounds how long in-flight deliveries may finish on
	// SIGTERM before they are handed back to the outbox.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	Sinks           []Sink        `yaml:"-"`

	lookupEnv func(string) (string, bool)
	kinds     sinks.Kinds
}

// Kinds are the sink kinds the file was parsed with: sinks defined at run
// time are of these too.
func (f *File) Kinds() sinks.Kinds { return f.kinds }

// LookupEnv is the environment the file's ${NAME} references were expanded
// from; sink definitions from the registry are expanded from it too.
func (f *File) LookupEnv() func(string) (string, bool) {
	if f.lookupEnv == nil {
		return os.LookupEnv
	}
	return f.lookupEnv
}

// Secrets limits the environment sinks defined at run time may expand.
type Secrets struct {
	// AllowEnv names the environment variables a sink defined through the
	// admin API or the CLI may reference as ${NAME} (default: none). Sinks
	// from the file may reference any.
	AllowEnv []string `yaml:"allow_env"`
}

// Env is how sink definitions are read: where their ${NAME} references
// are expanded from and the kinds their type: may name.
type Env struct {
	Lookup func(string) (string, bool)
	// RuntimeAllow is what a definition made at run time may reference.
	RuntimeAllow []string
	Kinds        sinks.Kinds
}

// Env is the file's environment for sink definitions.
func (f *File) Env() Env {
	return Env{Lookup: f.LookupEnv(), RuntimeAllow: f.Secrets.AllowEnv, Kinds: f.kinds}
}

// WebhookPolicy is what the file lets webhooks reach.
func (f *File) WebhookPolicy() (netguard.Policy, error) {
	allow, err := netguard.ParseAllow(f.WebhookAllow)
	if err != nil {
		return netguard.Policy{}, fmt.Errorf("webhook_allow: %w", err)
	}
	return netguard.Policy{Allow: allow, HTTPSOnly: f.WebhookHTTPSOnly}, nil
}

// Log configures the worker's logs.
type Log struct {
	// Level is debug, info, warn or error (the log-level setting
	// overrides it on every node).
	Level string `yaml:"level"`
	// Format is json, text, or auto (text on a terminal).
	Format string `yaml:"format"`
}

// Admin configures the worker's HTTP endpoint for /metrics (Prometheus),
// /healthz and /readyz.
type Admin struct {
	// Listen is host:port, or "off".
	Listen string `yaml:"listen"`
	// Token turns on the admin API under /v1/ (sinks and settings) for
	// requests bearing it; write ${NAME} to take it from the environment,
	// or give TokenFile instead. Without either, the API is off.
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// AccountTokens map account names to tokens that read and manage only
	// that account's events in the event log, and nothing else. A value
	// is the token itself (write ${NAME}) or file:PATH to read it from.
	AccountTokens map[string]string `yaml:"account_tokens"`
	// TLS serves the admin endpoint over HTTPS.
	TLS ServerTLS `yaml:"tls"`
	// TraceURL links an event on the console to its trace: a URL with
	// {trace_id} (the trace the event's emit started, for example
	// http://jaeger:16686/trace/{trace_id}) or {event_id} in it.
	TraceURL string `yaml:"trace_url"`
}

// Accounts returns the account tokens, read from their files, as a map
// from token to account name.
func (a Admin) Accounts() (map[string]string, error) {
	out := make(map[string]string, len(a.AccountTokens))
	for account, v := range a.AccountTokens {
		value, file := v, ""
		if path, ok := strings.CutPrefix(v, "file:"); ok {
			value, file = "", path
		}
		token, err := readToken("admin.account_tokens."+account, value, file)
		if err != nil {
			return nil, err
		}
		if other, dup := out[token]; dup {
			return nil, fmt.Errorf("admin.account_tokens: accounts %s and %s share a token", other, account)
		}
		out[token] = account
	}
	return out, nil
}

// readToken is a token given as its value or in a file, at least 16
// characters long; setting names it in errors (never the token).
func readToken(setting, value, file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", setting, err)
		}
		value = strings.TrimSpace(string(b))
	}
	if len(value) < 16 {
		return "", fmt.Errorf("%s is shorter than 16 characters: use a long random token (openssl rand -hex 32)", setting)
	}
	return value, nil
}

// APIToken is the admin API's token ("" when the API is off).
func (a Admin) APIToken() (string, error) {
	if a.TokenFile == "" {
		return a.Token, nil
	}
	b, err := os.ReadFile(a.TokenFile)
	if err != nil {
		return "", fmt.Errorf("admin.token_file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("admin.token_file %s is empty", a.TokenFile)
	}
	return token, nil
}

// Cluster makes the embedded servers of several nodes one NATS cluster,
// whose streams and buckets are replicated.
type Cluster struct {
	// Name is the cluster's name; every node uses the same one.
	Name string `yaml:"name"`
	// Listen is host:port where this node accepts the other nodes' routes.
	Listen string `yaml:"listen"`
	// Routes are the other nodes' cluster addresses (host:port or
	// nats-route://host:port); listing this node's own address is harmless.
	Routes []string `yaml:"routes"`
	// Replicas is how many nodes hold each stream and bucket (default 3,
	// or fewer when the cluster has fewer nodes).
	Replicas int `yaml:"replicas"`
	// Auth is required of, and presented on, every route; TLS makes
	// routes mutual TLS (ca_file verifies the other nodes).
	Auth RouteAuth   `yaml:"auth"`
	TLS  ListenerTLS `yaml:"tls"`
}

// Replication is the replica count for streams and buckets: 1 on a
// single node.
func (f *File) Replication() int {
	if f.Cluster.Enabled() {
		return f.Cluster.Replicas
	}
	return max(f.Outbox.Replicas, 1)
}

// Enabled reports whether the node is configured to form a cluster.
func (c Cluster) Enabled() bool { return c.Name != "" || c.Listen != "" || len(c.Routes) > 0 }

// RouteURLs are the routes as nats-route:// URLs.
func (c Cluster) RouteURLs() []string {
	out := make([]string, 0, len(c.Routes))
	for _, r := range c.Routes {
		if !strings.Contains(r, "://") {
			r = "nats-route://" + r
		}
		out = append(out, r)
	}
	return out
}

func (c Cluster) validate() error {
	if !c.Enabled() {
		return nil
	}
	if c.Name == "" {
		return errors.New("cluster.name is required: every node of one cluster uses the same name")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("cluster.listen %q: want host:port: %w", c.Listen, err)
	}
	if len(c.Routes) == 0 {
		return errors.New("cluster.routes: list the other nodes' cluster addresses (host:port)")
	}
	for i, r := range c.RouteURLs() {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "nats-route" || u.Port() == "" {
			return fmt.Errorf("cluster.routes[%d] %q: want host:port or nats-route://host:port", i, c.Routes[i])
		}
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("cluster.replicas %d: want 1 to 5 (JetStream's limit)", c.Replicas)
	}
	return nil
}

// Outbox configures the outbox.
type Outbox struct {
	// Listen is where the embedded server accepts clients.
	Listen string `yaml:"listen"`
	// URL, when set, uses an existing NATS server instead of embedding one.
	URL string `yaml:"url"`
	// Replicas is the replica count of the streams and buckets on an
	// existing NATS cluster (with URL); default 1.
	Replicas int `yaml:"replicas"`
	// Sync is "always" (fsync before acknowledging) or an interval.
	Sync string `yaml:"sync"`
	// MaxAge drops an event this old, delivered or not (warned about at
	// 80%); every sink's retry.max_age must be below it.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxBytes caps the undelivered backlog; beyond it emit fails with
	// "outbox full".
	MaxBytes ByteSize `yaml:"max_bytes"`
	// MaxEventSize caps one encoded event.
	MaxEventSize ByteSize `yaml:"max_event_size"`
	// DuplicateWindow is how long a re-emitted event id is recognised.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// DeadLetterMaxAge is how long a dead letter is kept for replay.
	DeadLetterMaxAge time.Duration `yaml:"dead_letter_max_age"`
	// AttemptLogMaxBytes caps the attempts stream, which carries batches
	// of attempt records to every node's event log; the oldest go first.
	AttemptLogMaxBytes ByteSize `yaml:"attempt_log_max_bytes"`
	// Auth admits only the worker and the listed producers; TLS serves
	// the client port over TLS.
	Auth OutboxAuth  `yaml:"auth"`
	TLS  ListenerTLS `yaml:"tls"`
	// Insecure allows a client or cluster listener on a non-loopback
	// address without auth: say so only where the network itself is
	// trusted.
	Insecure bool `yaml:"insecure"`
}

// EventLog configures the durable, queryable history of events and
// delivery attempts each node keeps.
type EventLog struct {
	// Enabled is true unless set false (a pure pipeline keeps no history).
	Enabled *bool `yaml:"enabled"`
	// URL, postgres://..., writes the log to a shared PostgreSQL database;
	// empty keeps it in a SQLite file in data_dir. ${NAME} keeps the
	// password out of the file.
	URL string `yaml:"url"`
	// MaxLag is how far behind the outbox the log may fall and still hold
	// delivered events in it (default 1h; also never more than a quarter
	// of outbox.max_bytes). Past it the outbox is trimmed without waiting:
	// delivery never stops because the log is slow.
	MaxLag time.Duration `yaml:"max_lag"`
}

// On reports whether the event log is kept.
func (e EventLog) On() bool { return e.Enabled == nil || *e.Enabled }

// MaxLagBytes is the most outbox bytes a lagging log may hold back.
func (f *File) MaxLagBytes() int64 { return int64(f.Outbox.MaxBytes) / 4 }

// SinkCommon holds the settings every kind of sink has.
type SinkCommon struct {
	// Name identifies the sink in commands, metrics and dead letters:
	// 1 to 64 letters, digits, '_' or '-'.
	Name string `yaml:"name"`
	// Type is the sink's kind: webhook, amqp, kafka, handler, or one the
	// program embedding the worker added.
	Type string `yaml:"type"`
	// Events, Levels and States select the events the sink receives:
	// type globs ("VOLUME_*"), levels (INFO, WARN, ERROR) and action-event
	// states (Created, Scheduled, Started, Completed). Empty selects all.
	Events []string `yaml:"events"`
	Levels []string `yaml:"levels"`
	States []string `yaml:"states"`
	// Rate caps deliveries to this sink ("200/s", "6000/m"); Burst is how
	// many may go at once after a pause (default: one second's worth).
	Rate  string `yaml:"rate"`
	Burst int    `yaml:"burst"`
	// CircuitBreaker stops fetching while the endpoint keeps failing and
	// probes it instead (failures: -1 turns it off).
	CircuitBreaker breaker.Config `yaml:"circuit_breaker"`
	// Ordering is "none" (default: full concurrency) or "key": events with
	// the same key reach the sink in emit order, also across retries.
	Ordering string `yaml:"ordering"`
	// Format is how an event is written: courier (default), gluster
	// (Gluster's webhook body) or cloudevents.
	Format string `yaml:"format"`
	// Concurrency is how many deliveries are in flight per node (default:
	// the concurrency setting).
	Concurrency int `yaml:"concurrency"`
	// Retry is the backoff between attempts and when an event becomes a
	// dead letter (defaults: the retry-* settings).
	Retry retry.Policy `yaml:"retry"`
}

// Sink is one configured sink: the common part, its kind and the kind's
// own settings.
type Sink struct {
	SinkCommon
	Kind sinks.Kind
	// Settings are the kind's own, decoded into what Kind.NewSettings
	// returned, defaults filled in.
	Settings sinks.Settings
	// Source is the sink's definition as written, ${ENV} references not
	// expanded: what the replicated sink registry stores, so a secret
	// given as ${NAME} is looked up on each node and never replicated.
	Source string
}

// SinkDefaults fill what a sink definition leaves out; operators change
// them at run time with `worker config set`.
type SinkDefaults struct {
	Concurrency int
	Retry       retry.Policy
	// OutboxMaxAge bounds retry.max_age.
	OutboxMaxAge time.Duration
	// Webhook is what a webhook's URL may name (a literal address in a
	// refused range is an error when the sink is defined).
	Webhook netguard.Policy
}

// BuiltinSinkDefaults are the defaults when no setting overrides them.
func BuiltinSinkDefaults(outboxMaxAge time.Duration) SinkDefaults {
	return SinkDefaults{Concurrency: DefaultConcurrency, Retry: retry.DefaultPolicy(), OutboxMaxAge: outboxMaxAge}
}

// ParseSink reads one sink definition (a YAML or JSON mapping, as one
// entry under sinks: in the file), fills defaults and validates it.
func ParseSink(def []byte, lookupEnv func(string) (string, bool), d SinkDefaults, kinds sinks.Kinds) (Sink, error) {
	s, err := parseSink(def, lookupEnv, d, kinds)
	if err == nil || !envRef.Match(def) || errors.Is(err, errEnvNotSet) {
		return s, err // naming unset variables shows no value
	}
	// The error may quote an expanded value, which may be a secret: report
	// the error of the definition as written instead.
	asWritten := func(name string) (string, bool) { return "${" + name + "}", true }
	if _, werr := parseSink(def, asWritten, d, kinds); werr != nil {
		return Sink{}, werr
	}
	return Sink{}, errors.New("the sink definition is invalid once its ${...} references are expanded (the values are not shown: they may be secrets)")
}

// CheckRuntimeEnv refuses a definition made at run time (admin API, CLI)
// that references an environment variable outside allow: whoever may
// define a sink could otherwise have any of the worker's variables sent to
// an endpoint of their choice. References in comments do not count.
func CheckRuntimeEnv(def []byte, allow []string) error {
	var root yaml.Node
	if err := yaml.Unmarshal(def, &root); err != nil {
		return friendlyYAMLError(err)
	}
	var refused []string
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode {
			for _, m := range envRef.FindAllStringSubmatch(n.Value, -1) {
				if !slices.Contains(allow, m[1]) && !slices.Contains(refused, m[1]) {
					refused = append(refused, m[1])
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&root)
	if len(refused) == 0 {
		return nil
	}
	allowed := "none is"
	if len(allow) > 0 {
		allowed = strings.Join(allow, ", ") + " are"
	}
	return fmt.Errorf("the definition references ${%s}: a sink defined at run time may expand only the variables in the worker's secrets.allow_env (%s allowed)", strings.Join(refused, "}, ${"), allowed)
}

func parseSink(def []byte, lookupEnv func(string) (string, bool), d SinkDefaults, kinds sinks.Kinds) (Sink, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(def, &root); err != nil {
		return Sink{}, friendlyYAMLError(err)
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return Sink{}, errors.New("a sink definition is a mapping with at least name and type")
	}
	n := root.Content[0]
	if err := expandEnv(n, lookupEnv); err != nil {
		return Sink{}, err
	}
	s, err := decodeSink(n, kinds)
	if err != nil {
		return Sink{}, err
	}
	s.applyDefaults(d)
	if err := s.validate(d); err != nil {
		return Sink{}, fmt.Errorf("sink %q: %w", s.Name, err)
	}
	s.Source = string(def)
	return s, nil
}

// DefaultSinkCommon is the common part of a definition that sets none of
// it, with the defaults the parser fills in.
func DefaultSinkCommon(d SinkDefaults) SinkCommon {
	var s Sink
	s.applyDefaults(d)
	return s.SinkCommon
}

func (s *Sink) applyDefaults(d SinkDefaults) {
	if s.Concurrency == 0 {
		s.Concurrency = d.Concurrency
	}
	s.Retry = s.Retry.WithDefaultsFrom(d.Retry)
	s.CircuitBreaker = s.CircuitBreaker.WithDefaults()
}

// AttemptTimeout bounds one delivery attempt: the sink's own timeout,
// backed up by a second.
func (s Sink) AttemptTimeout() time.Duration {
	if s.Settings != nil {
		return s.Settings.AttemptTimeout() + time.Second
	}
	return time.Minute
}

// AckWait is the sink's consumer ack wait: how long JetStream waits for a
// delivery's outcome before it hands the event out again. It is short, so
// that events in flight on a crashed node come back within seconds (and so
// does an event JetStream dropped from its redelivery queue, which it does
// for every queued event when the outbox is trimmed); the delivery loop
// keeps longer attempts alive with progress signals.
func (s Sink) AckWait() time.Duration { return DefaultAckWait }

// DefaultAckWait is every sink's ack wait.
const DefaultAckWait = 5 * time.Second

// MaxAckPending is how many of the sink's events may be in flight across
// all nodes.
func (s Sink) MaxAckPending() int { return max(1000, 20*s.Concurrency) }

// Defaults.
const (
	DefaultListen          = "127.0.0.1:4244"
	DefaultAdminListen     = "127.0.0.1:9464"
	DefaultDataDir         = "./data"
	DefaultMaxAge          = 30 * 24 * time.Hour
	DefaultMaxBytes        = 10 << 30
	DefaultMaxEventSize    = event.DefaultMaxSize
	DefaultDuplicateWindow = 2 * time.Minute
	// DefaultAttemptLogMaxBytes holds about 300k attempts; in memory it
	// takes about twice that (137 MB of heap when full, measured).
	DefaultAttemptLogMaxBytes = 64 << 20
	DefaultConcurrency        = 16
	DefaultShutdownTimeout    = 15 * time.Second
	DefaultEventLogMaxLag     = time.Hour
)

// Load reads and validates the file at path; its sinks are of kinds.
func Load(path string, kinds sinks.Kinds) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	f, err := Parse(b, os.LookupEnv, kinds)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return f, nil
}

// Parse decodes a configuration strictly, fills defaults and validates it.
// ${NAME} in a value is replaced by the environment variable NAME (looked
// up with lookupEnv) after the YAML is parsed, so a secret is taken
// verbatim whatever characters it holds. Sinks are of kinds (type: names
// one); the File keeps them for sinks defined at run time.
func Parse(b []byte, lookupEnv func(string) (string, bool), kinds sinks.Kinds) (*File, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, flowEnvHint(b, friendlyYAMLError(err))
	}
	var (
		f       File
		sources []string
	)
	if len(root.Content) > 0 {
		doc := root.Content[0]
		var err error
		if sources, err = sinkSources(doc); err != nil {
			return nil, err
		}
		if err := expandEnv(doc, lookupEnv); err != nil {
			return nil, err
		}
		var top struct {
			File  `yaml:",inline"`
			Sinks []yaml.Node `yaml:"sinks"`
		}
		if err := decodeStrict(doc, &top); err != nil {
			return nil, err
		}
		f = top.File
		for i := range top.Sinks {
			s, err := decodeSink(&top.Sinks[i], kinds)
			if err != nil {
				return nil, fmt.Errorf("sinks[%d]: %w", i, err)
			}
			s.Source = sources[i]
			f.Sinks = append(f.Sinks, s)
		}
	}
	f.lookupEnv = lookupEnv
	f.kinds = kinds
	f.setDefaults()
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// sinkSources renders each entry under sinks: as written, before ${ENV}
// expansion.
func sinkSources(doc *yaml.Node) ([]string, error) {
	if doc.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value != "sinks" || doc.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		var out []string
		for _, item := range doc.Content[i+1].Content {
			b, err := yaml.Marshal(item)
			if err != nil {
				return nil, fmt.Errorf("sinks: %w", err)
			}
			out = append(out, string(b))
		}
		return out, nil
	}
	return nil, nil
}

var (
	envRef  = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
	envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// expandEnv replaces ${NAME} in every scalar value below n. Unset
// variables are an error, all named at once: an empty token silently sent
// would be worse.
func expandEnv(n *yaml.Node, lookup func(string) (string, bool)) error {
	var missing []string
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode {
			n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
				name := envRef.FindStringSubmatch(ref)[1]
				v, ok := lookup(name)
				if !ok {
					missing = append(missing, fmt.Sprintf("%s (line %d)", name, n.Line))
				}
				return v
			})
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", errEnvNotSet, strings.Join(missing, ", "))
	}
	return nil
}

var errEnvNotSet = errors.New("environment variables not set")

// decodeSink decodes a definition: the common keys into SinkCommon, the
// rest into its kind's settings, refusing keys neither has.
func decodeSink(n *yaml.Node, kinds sinks.Kinds) (Sink, error) {
	var head struct {
		Name string `yaml:"name"`
		Type string `yaml:"type"`
	}
	if err := n.Decode(&head); err != nil {
		return Sink{}, friendlyYAMLError(err)
	}
	if head.Type == "" {
		return Sink{}, fmt.Errorf("sink %q (line %d): type is required (%s)", head.Name, n.Line, kinds.Names())
	}
	kind, ok := kinds.Lookup(head.Type)
	if !ok {
		return Sink{}, fmt.Errorf("sink %q (line %d): unknown type %q (known: %s)", head.Name, n.Line, head.Type, kinds.Names())
	}
	s := Sink{Kind: kind, Settings: kind.NewSettings()}
	if err := decodeStrict(n, &s.SinkCommon, s.Settings); err != nil {
		return Sink{}, fmt.Errorf("sink %q: %w", head.Name, err)
	}
	s.Settings.SetDefaults()
	return s, nil
}

// decodeStrict decodes the mapping n into each of vs (pointers to
// structs), refusing keys none has a field for and naming their line in
// the file. (yaml.Node.Decode alone ignores unknown keys, and re-encoding
// the node to use the strict decoder would lose the line numbers.)
func decodeStrict(n *yaml.Node, vs ...any) error {
	if len(vs) == 1 {
		if err := checkKeys(n, reflect.TypeOf(vs[0]).Elem(), ""); err != nil {
			return err
		}
	} else if n.Kind == yaml.MappingNode {
		fields := map[string]reflect.Type{}
		for _, v := range vs {
			collectFields(reflect.TypeOf(v).Elem(), fields)
		}
		if err := checkMapping(n, fields, ""); err != nil {
			return err
		}
	}
	for _, v := range vs {
		if err := n.Decode(v); err != nil {
			return friendlyYAMLError(err)
		}
	}
	return nil
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// checkKeys walks a mapping node against the struct type it decodes into.
func checkKeys(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || t == reflect.TypeFor[yaml.Node]() {
		return nil
	}
	switch {
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			if err := checkKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := map[string]reflect.Type{}
		collectFields(t, fields)
		return checkMapping(n, fields, path)
	}
	return nil
}

// checkMapping checks a mapping's keys against the fields (yaml key to
// type) it decodes into.
func checkMapping(n *yaml.Node, fields map[string]reflect.Type, path string) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		ft, ok := fields[key.Value]
		if !ok {
			return fmt.Errorf("line %d: unknown key %q%s", key.Line, key.Value, inPath(path))
		}
		if err := checkKeys(val, ft, joinPath(path, key.Value)); err != nil {
			return err
		}
	}
	return nil
}

// collectFields maps each yaml key of t (inline structs included) to its
// field type.
func collectFields(t reflect.Type, into map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		switch {
		case name == "-":
		case opts == "inline":
			collectFields(f.Type, into)
		case !f.IsExported():
		case name == "":
			into[strings.ToLower(f.Name)] = f.Type
		default:
			into[name] = f.Type
		}
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func inPath(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}

var (
	yamlErrorLine = regexp.MustCompile(`^line (\d+):`)
	unquotedEnv   = regexp.MustCompile(`[:,\[]\s*\$\{`)
)

// flowEnvHint explains the likeliest cause of a YAML syntax error in a
// Courier file: an unquoted ${NAME} inside {...}, where YAML reads "{" as
// the start of another mapping. yaml.v3 numbers the lines of such errors
// from 0, so the line it names and the next are looked at, and the message
// names the right one.
func flowEnvHint(src []byte, err error) error {
	m := yamlErrorLine.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	n, _ := strconv.Atoi(m[1])
	lines := strings.Split(string(src), "\n")
	for _, i := range []int{n, n - 1} {
		if i < 0 || i >= len(lines) {
			continue
		}
		if l := lines[i]; strings.Contains(l, "{") && unquotedEnv.MatchString(l) {
			rest := strings.TrimPrefix(err.Error(), m[0])
			return fmt.Errorf(`line %d:%s (inside {...} quote each ${NAME}: password: "${NAME}")`, i+1, rest)
		}
	}
	return err
}

func friendlyYAMLError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n  ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = strings.ReplaceAll(msg, "\n  ", "; ")
	return errors.New(msg)
}

func (f *File) setDefaults() {
	if f.NodeID == "" {
		f.NodeID, _ = os.Hostname()
	}
	if f.DataDir == "" {
		f.DataDir = DefaultDataDir
	}
	if f.SpoolDir == "" {
		f.SpoolDir = filepath.Join(f.DataDir, "spool")
	}
	if f.Admin.Listen == "" {
		f.Admin.Listen = DefaultAdminListen
	}
	if f.Log.Level == "" {
		f.Log.Level = "info"
	}
	if f.Log.Format == "" {
		f.Log.Format = "auto"
	}
	o := &f.Outbox
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.Sync == "" {
		o.Sync = "always"
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxEventSize == 0 {
		o.MaxEventSize = DefaultMaxEventSize
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = min(DefaultDuplicateWindow, o.MaxAge)
	}
	if o.DeadLetterMaxAge == 0 {
		o.DeadLetterMaxAge = DefaultMaxAge
	}
	if o.AttemptLogMaxBytes == 0 {
		o.AttemptLogMaxBytes = DefaultAttemptLogMaxBytes
	}
	if f.Cluster.Enabled() && f.Cluster.Replicas == 0 {
		others := 0
		for _, r := range f.Cluster.Routes {
			if strings.TrimPrefix(r, "nats-route://") != f.Cluster.Listen {
				others++
			}
		}
		f.Cluster.Replicas = min(3, others+1)
	}
	if f.ShutdownTimeout == 0 {
		f.ShutdownTimeout = DefaultShutdownTimeout
	}
	if f.EventLog.MaxLag == 0 {
		f.EventLog.MaxLag = DefaultEventLogMaxLag
	}
	f.Ingest.setDefaults()
	for i := range f.Sinks {
		f.Sinks[i].applyDefaults(BuiltinSinkDefaults(o.MaxAge))
	}
}

// SyncPolicy reads outbox.sync: always (0, true) or an interval.
func (o Outbox) SyncPolicy() (always bool, interval time.Duration, err error) {
	if o.Sync == "always" {
		return true, 0, nil
	}
	d, err := time.ParseDuration(o.Sync)
	if err != nil || d <= 0 {
		return false, 0, fmt.Errorf("outbox.sync %q: want \"always\" or an interval such as 1s", o.Sync)
	}
	return false, d, nil
}

// Validate reports the first invalid setting.
func (f *File) Validate() error {
	if err := f.checkRanges(); err != nil {
		return err
	}
	if _, _, err := f.Outbox.SyncPolicy(); err != nil {
		return err
	}
	if f.Outbox.DuplicateWindow > f.Outbox.DeadLetterMaxAge {
		return fmt.Errorf("outbox.duplicate_window (%s) must not exceed outbox.dead_letter_max_age (%s)", f.Outbox.DuplicateWindow, f.Outbox.DeadLetterMaxAge)
	}
	if f.Outbox.DuplicateWindow > f.Outbox.MaxAge {
		return fmt.Errorf("outbox.duplicate_window (%s) must not exceed outbox.max_age (%s)", f.Outbox.DuplicateWindow, f.Outbox.MaxAge)
	}
	if u := f.EventLog.URL; u != "" && !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
		return errors.New("event_log.url: want postgres://user:password@host/database (empty: SQLite in data_dir)")
	}
	if _, err := f.Admin.Accounts(); err != nil {
		return err
	}
	if err := f.Ingest.validate(f.Outbox.MaxEventSize); err != nil {
		return err
	}
	if t := f.Admin.TraceURL; t != "" {
		u, err := url.Parse(strings.NewReplacer("{event_id}", "x", "{trace_id}", "x").Replace(t))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !strings.Contains(t, "{event_id}") && !strings.Contains(t, "{trace_id}") {
			return fmt.Errorf("admin.trace_url %q: want an http or https URL with {trace_id} or {event_id} where the trace's or the event's id goes", t)
		}
	}
	if err := f.Admin.TLS.validate("admin.tls"); err != nil {
		return err
	}
	if err := f.validateNATSAuth(); err != nil {
		return err
	}
	if f.Admin.Token != "" && f.Admin.TokenFile != "" {
		return errors.New("admin.token and admin.token_file exclude each other")
	}
	if f.Admin.Token != "" && len(f.Admin.Token) < 16 {
		return errors.New("admin.token is shorter than 16 characters: use a long random token (openssl rand -hex 32)")
	}
	if err := f.Cluster.validate(); err != nil {
		return err
	}
	if f.Outbox.Replicas != 0 && (f.Outbox.URL == "" || f.Outbox.Replicas < 1 || f.Outbox.Replicas > 5) {
		return fmt.Errorf("outbox.replicas %d: only with outbox.url (an existing NATS cluster), from 1 to 5; embedded nodes set cluster.replicas", f.Outbox.Replicas)
	}
	if f.Cluster.Enabled() && f.Outbox.URL != "" {
		return errors.New("cluster and outbox.url exclude each other: with outbox.url the worker embeds no server and the external NATS cluster replicates")
	}
	switch f.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level %q: want debug, info, warn or error", f.Log.Level)
	}
	switch f.Log.Format {
	case "auto", "json", "text":
	default:
		return fmt.Errorf("log.format %q: want auto, json or text", f.Log.Format)
	}
	policy, err := f.WebhookPolicy()
	if err != nil {
		return err
	}
	for _, name := range f.Secrets.AllowEnv {
		if !envName.MatchString(name) {
			return fmt.Errorf("secrets.allow_env: %q is not an environment variable name", name)
		}
	}
	seen := map[string]bool{}
	for i, s := range f.Sinks {
		d := BuiltinSinkDefaults(f.Outbox.MaxAge)
		d.Webhook = policy
		if err := s.validate(d); err != nil {
			return fmt.Errorf("sinks[%d] (%s): %w", i, s.Name, err)
		}
		if seen[s.Name] {
			return fmt.Errorf("sinks[%d]: sink name %q is used twice", i, s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}

func (s Sink) validate(d SinkDefaults) error {
	outboxMaxAge := d.OutboxMaxAge
	if err := sinks.ValidateName(s.Name); err != nil {
		return err
	}
	if _, err := event.ParseFormat(s.Format); err != nil {
		return err
	}
	if _, err := s.Filter(); err != nil {
		return err
	}
	if _, _, err := s.RateLimit(); err != nil {
		return err
	}
	if s.Ordering != "" && s.Ordering != "none" && s.Ordering != "key" {
		return fmt.Errorf("ordering %q: want none or key", s.Ordering)
	}
	if s.Concurrency < 1 || s.Concurrency > 4096 {
		return fmt.Errorf("concurrency %d: want 1 to 4096", s.Concurrency)
	}
	if err := s.Retry.Validate(); err != nil {
		return err
	}
	if err := s.CircuitBreaker.Validate(); err != nil {
		return err
	}
	if s.Retry.MaxAge >= outboxMaxAge {
		// Otherwise the outbox could drop an event this sink still owes
		// before it is dead-lettered.
		return fmt.Errorf("retry.max_age (%s) must be below outbox.max_age (%s)", s.Retry.MaxAge, outboxMaxAge)
	}
	if s.Settings == nil {
		return nil
	}
	if err := s.Settings.Validate(); err != nil {
		return err
	}
	if p, ok := s.Settings.(sinks.PolicedURL); ok {
		u, err := url.Parse(p.PolicedURL())
		if err != nil {
			return fmt.Errorf("url: %w", err)
		}
		return d.Webhook.CheckURL(u)
	}
	return nil
}

// Filter is the sink's event filter: type globs, levels and states.
func (s SinkCommon) Filter() (event.Filter, error) {
	f, err := event.NewFilter(s.Events)
	if err != nil {
		return f, err
	}
	if f, err = f.WithLevels(s.Levels); err != nil {
		return f, err
	}
	return f.WithStates(s.States)
}

// RateLimit reads rate ("N/s", "N/m", "N/h"; empty for none) as events per
// second, with the burst.
func (s SinkCommon) RateLimit() (perSecond float64, burst int, err error) {
	if s.Rate == "" {
		return 0, 0, nil
	}
	num, unit, ok := strings.Cut(s.Rate, "/")
	n, perr := strconv.ParseFloat(strings.TrimSpace(num), 64)
	per := map[string]float64{"s": 1, "m": 60, "h": 3600}[strings.TrimSpace(unit)]
	if !ok || perr != nil || n <= 0 || per == 0 {
		return 0, 0, fmt.Errorf("rate %q: want a positive number per s, m or h, such as 200/s", s.Rate)
	}
	perSecond = n / per
	burst = s.Burst
	if burst < 0 {
		return 0, 0, fmt.Errorf("burst must not be negative, got %d", burst)
	}
	if burst == 0 {
		burst = max(1, int(perSecond))
	}
	return perSecond, burst, nil
}

// Target is where the sink delivers, safe to show in listings.
func (s Sink) Target() string {
	if s.Settings != nil {
		return s.Settings.Target()
	}
	return ""
}

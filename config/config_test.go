package config_test

import (
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/retry"
	"github.com/courierhq/courier/sinks/amqp"
	"github.com/courierhq/courier/sinks/builtin"
	"github.com/courierhq/courier/sinks/kafka"
	"github.com/courierhq/courier/sinks/webhook"
)

// env returns a lookup function over a fixed set of variables.
func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

const fullConfig = `# Courier on a Gluster node.
node_id: gluster-1
data_dir: /var/lib/courier
outbox:
  listen: 127.0.0.1:5222
  sync: 1s
  max_age: 720h
  max_bytes: 10GiB
sinks:
  - name: audit
    type: webhook
    url: https://audit.example.com/hooks/gluster
    events: ["VOLUME_*", "PEER_ATTACH"]
    format: gluster
    bearer_token: ${AUDIT_TOKEN}
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
    concurrency: 4
    retry:
      initial: 2s
      multiplier: 3
      max_interval: 5m
      max_attempts: 10
      max_age: 24h
      jitter: 0.1
`

func TestParseFullExample(t *testing.T) {
	f, err := config.Parse([]byte(fullConfig), env(map[string]string{"AUDIT_TOKEN": "t0ken-from-env"}), builtin.Kinds())
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if f.NodeID != "gluster-1" {
		t.Errorf("NodeID = %q, want gluster-1", f.NodeID)
	}
	if f.DataDir != "/var/lib/courier" {
		t.Errorf("DataDir = %q, want /var/lib/courier", f.DataDir)
	}
	wantOutbox := config.Outbox{
		Listen:           "127.0.0.1:5222",
		Sync:             "1s",
		MaxAge:           720 * time.Hour,
		MaxBytes:         10 << 30,
		MaxEventSize:     outbox.DefaultMaxEventSize,
		DuplicateWindow:  2 * time.Minute,
		DeadLetterMaxAge: 30 * 24 * time.Hour,

		AttemptLogMaxBytes: config.DefaultAttemptLogMaxBytes,
	}
	if !reflect.DeepEqual(f.Outbox, wantOutbox) {
		t.Errorf("Outbox = %+v, want %+v", f.Outbox, wantOutbox)
	}
	always, interval, err := f.Outbox.SyncPolicy()
	if err != nil || always || interval != time.Second {
		t.Errorf("SyncPolicy() = %v, %s, %v; want false, 1s, nil", always, interval, err)
	}
	if f.Log != (config.Log{Level: "info", Format: "auto"}) {
		t.Errorf("Log = %+v, want the defaults info/auto", f.Log)
	}
	if f.ShutdownTimeout != 15*time.Second {
		t.Errorf("ShutdownTimeout = %s, want 15s", f.ShutdownTimeout)
	}
	if len(f.Sinks) != 1 {
		t.Fatalf("%d sinks, want 1", len(f.Sinks))
	}
	s := f.Sinks[0]
	if s.Name != "audit" || s.Type != "webhook" || s.Format != "gluster" || s.Concurrency != 4 {
		t.Errorf("sink = name %q type %q format %q concurrency %d, want audit webhook gluster 4",
			s.Name, s.Type, s.Format, s.Concurrency)
	}
	if !slices.Equal(s.Events, []string{"VOLUME_*", "PEER_ATTACH"}) {
		t.Errorf("Events = %q", s.Events)
	}
	wantRetry := retry.Policy{
		Initial: 2 * time.Second, Multiplier: 3, MaxInterval: 5 * time.Minute,
		MaxAttempts: 10, MaxAge: 24 * time.Hour, Jitter: 0.1,
	}
	if s.Retry != wantRetry {
		t.Errorf("Retry = %+v, want %+v", s.Retry, wantRetry)
	}
	wp, ok := s.Settings.(*webhook.Config)
	if !ok {
		t.Fatalf("Settings = %T, want *webhook.Config", s.Settings)
	}
	w := *wp
	if w.URL != "https://audit.example.com/hooks/gluster" {
		t.Errorf("URL = %q", w.URL)
	}
	if w.BearerToken != "t0ken-from-env" {
		t.Errorf("BearerToken = %q, want the value of AUDIT_TOKEN", w.BearerToken)
	}
	if w.Secret != "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" {
		t.Errorf("Secret = %q", w.Secret)
	}
	if w.Timeout != webhook.DefaultTimeout || w.MaxResponseBytes != webhook.DefaultMaxResponseBytes ||
		w.CloudEventsMode != "structured" {
		t.Errorf("webhook defaults = timeout %s, max response %d, mode %q; want %s, %d, structured",
			w.Timeout, w.MaxResponseBytes, w.CloudEventsMode, webhook.DefaultTimeout, webhook.DefaultMaxResponseBytes)
	}
}

func TestParseFillsDefaults(t *testing.T) {
	in := `
sinks:
  - name: minimal
    type: webhook
    url: http://localhost:8080/
`
	f, err := config.Parse([]byte(in), env(nil), builtin.Kinds())
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	host, _ := os.Hostname()
	if f.NodeID != host {
		t.Errorf("NodeID = %q, want the host name %q", f.NodeID, host)
	}
	want := config.File{
		NodeID:  host,
		DataDir: "./data",
		Log:     config.Log{Level: "info", Format: "auto"},
		Outbox: config.Outbox{
			Listen: "127.0.0.1:4244", Sync: "always", MaxAge: 30 * 24 * time.Hour, MaxBytes: 10 << 30,
			MaxEventSize: 1 << 20, DuplicateWindow: 2 * time.Minute, DeadLetterMaxAge: 30 * 24 * time.Hour,
			AttemptLogMaxBytes: 64 << 20,
		},
		ShutdownTimeout: 15 * time.Second,
	}
	if f.NodeID != want.NodeID || f.DataDir != want.DataDir || f.Log != want.Log || !reflect.DeepEqual(f.Outbox, want.Outbox) ||
		f.ShutdownTimeout != want.ShutdownTimeout {
		t.Errorf("Parse = %+v, want %+v", *f, want)
	}
	if len(f.Sinks) != 1 {
		t.Fatalf("%d sinks, want 1", len(f.Sinks))
	}
	s := f.Sinks[0]
	if s.Concurrency != 16 {
		t.Errorf("Concurrency = %d, want 16", s.Concurrency)
	}
	if s.Retry != retry.DefaultPolicy() {
		t.Errorf("Retry = %+v, want DefaultPolicy %+v", s.Retry, retry.DefaultPolicy())
	}
	if s.Format != "" || len(s.Events) != 0 {
		t.Errorf("Format %q, Events %q; want empty (courier format, every event)", s.Format, s.Events)
	}
	if w, ok := s.Settings.(*webhook.Config); !ok || w.Timeout != 15*time.Second || w.MaxResponseBytes != 64<<10 || w.CloudEventsMode != "structured" {
		t.Errorf("webhook = %+v, want its defaults", s.Settings)
	}
	always, _, err := f.Outbox.SyncPolicy()
	if err != nil || !always {
		t.Errorf("SyncPolicy() = %v, _, %v; want always", always, err)
	}
}

func TestParseEmptyFileIsValid(t *testing.T) {
	for _, in := range []string{"", "# nothing yet\n", "---\n"} {
		f, err := config.Parse([]byte(in), env(nil), builtin.Kinds())
		if err != nil {
			t.Errorf("Parse(%q) = %v, want the defaults", in, err)
			continue
		}
		if len(f.Sinks) != 0 || f.Outbox.Listen != config.DefaultListen {
			t.Errorf("Parse(%q) = %+v, want no sinks and the defaults", in, *f)
		}
	}
}

func TestParseRejectsInvalidConfigs(t *testing.T) {
	webhookSink := func(extra string) string {
		return "sinks:\n  - name: a\n    type: webhook\n    url: https://example.com/\n" + extra
	}
	tests := []struct {
		name string
		in   string
		env  map[string]string
		want []string // parts of the error message
	}{
		{
			name: "unknown top-level key",
			in:   "node_id: n1\ndata_dir: /tmp\nnode_name: n1\n",
			want: []string{"node_name", "line 3"},
		},
		{name: "negative outbox.max_age", in: "outbox:\n  max_age: -1h\n", want: []string{"outbox.max_age -1h0m0s", "from 1s"}},
		{name: "outbox.max_age of 1ns", in: "outbox:\n  max_age: 1ns\n", want: []string{"outbox.max_age 1ns", "from 1s"}},
		{name: "negative duplicate_window", in: "outbox:\n  duplicate_window: -1m\n", want: []string{"outbox.duplicate_window -1m0s"}},
		{name: "negative shutdown_timeout", in: "shutdown_timeout: -5s\n", want: []string{"shutdown_timeout -5s", "from 1s to 1h0m0s"}},
		{name: "tiny outbox.max_bytes", in: "outbox:\n  max_bytes: 1KiB\n", want: []string{"outbox.max_bytes 1024", "from 1MiB"}},
		{name: "outbox.max_event_size over 64MiB", in: "outbox:\n  max_event_size: 65MiB\n", want: []string{"outbox.max_event_size", "to 64MiB"}},
		{name: "negative max_response_bytes", in: webhookSink("    max_response_bytes: -1\n"), want: []string{"sinks[0]", "max_response_bytes -1"}},
		{
			name: "outbox on a public address without auth",
			in:   "outbox:\n  listen: 0.0.0.0:4244\n",
			want: []string{"outbox.listen 0.0.0.0:4244", "outbox.auth", "outbox.insecure"},
		},
		{
			name: "cluster on a public address without auth or TLS",
			in:   "outbox:\n  auth: {user: c, password: p}\ncluster:\n  name: c\n  listen: 10.0.0.1:6222\n  routes: [10.0.0.2:6222]\n",
			want: []string{"cluster.listen 10.0.0.1:6222", "cluster.tls"},
		},
		{
			name: "producers without the worker's user",
			in:   "outbox:\n  auth:\n    producers: [{user: app, password: x}]\n",
			want: []string{"outbox.auth.producers", "worker's own user"},
		},
		{
			name: "producer nkey that is a seed",
			in:   "outbox:\n  auth:\n    user: c\n    password: p\n    producers: [{nkey: SUAM}]\n",
			want: []string{"producers[0]", "public key"},
		},
		{
			name: "cluster TLS without a CA",
			in:   "cluster:\n  name: c\n  listen: 127.0.0.1:6222\n  tls: {cert_file: /dev/null, key_file: /dev/null}\n",
			want: []string{"cluster.tls.ca_file", "mutual"},
		},
		{
			name: "outbox TLS certificate missing",
			in:   "outbox:\n  tls: {cert_file: /nonexistent/cert.pem, key_file: /nonexistent/key.pem}\n",
			want: []string{"outbox.tls", "/nonexistent/cert.pem"},
		},
		{
			name: "webhook to the cloud metadata address",
			in:   "sinks:\n  - name: a\n    type: webhook\n    url: http://169.254.169.254/latest/meta-data\n",
			want: []string{"sinks[0]", "destination not allowed", "link-local", "webhook_allow"},
		},
		{
			name: "webhook to loopback outside the allow list",
			in:   "webhook_allow: [10.20.0.0/16]\nsinks:\n  - name: a\n    type: webhook\n    url: http://[::ffff:127.0.0.1]:9000/\n",
			want: []string{"destination not allowed", "IPv4-mapped form of 127.0.0.1"},
		},
		{
			name: "plain http with webhook_https_only",
			in:   "webhook_https_only: true\nwebhook_allow: [127.0.0.1/32]\nsinks:\n  - name: a\n    type: webhook\n    url: http://127.0.0.1:9000/\n",
			want: []string{"webhook_https_only", "http://"},
		},
		{
			name: "webhook_allow not a network",
			in:   "webhook_allow: [intranet]\n",
			want: []string{"webhook_allow", "intranet"},
		},
		{
			name: "secrets.allow_env not a variable name",
			in:   "secrets:\n  allow_env: [\"${X}\"]\n",
			env:  map[string]string{"X": "a b"},
			want: []string{"secrets.allow_env"},
		},
		{
			name: "ingest open on a public address",
			in:   "ingest:\n  listen: 0.0.0.0:8080\n",
			want: []string{"ingest.listen", "ingest.tokens", "add a token"},
		},
		{
			name: "admin.trace_url without an id",
			in:   "admin:\n  trace_url: http://jaeger:16686/search\n",
			want: []string{"admin.trace_url", "{trace_id}"},
		},
		{
			name: "admin.trace_url not http",
			in:   "admin:\n  trace_url: \"javascript:alert({event_id})\"\n",
			want: []string{"admin.trace_url", "http or https"},
		},
		{
			name: "ingest token too short",
			in:   "ingest:\n  listen: 127.0.0.1:8080\n  tokens: [{token: abc}]\n",
			want: []string{"ingest.tokens[0]", "shorter than 16"},
		},
		{
			name: "ingest token twice",
			in:   "ingest:\n  listen: 127.0.0.1:8080\n  tokens: [{token: 0123456789abcdef}, {token: 0123456789abcdef, account: a}]\n",
			want: []string{"ingest.tokens[1]", "twice"},
		},
		{
			name: "ingest TLS without a key",
			in:   "ingest:\n  listen: 127.0.0.1:8080\n  tls: {cert_file: /c.pem}\n",
			want: []string{"ingest.tls", "key_file"},
		},
		{
			name: "ingest body cap below the event size",
			in:   "ingest:\n  listen: 127.0.0.1:8080\n  max_body_bytes: 1KiB\n",
			want: []string{"ingest.max_body_bytes", "outbox.max_event_size"},
		},
		{
			name: "unquoted ${NAME} in a flow mapping",
			in:   "outbox:\n  auth: {user: courier, password: ${PW}}\n",
			want: []string{"line 2", `quote each ${NAME}`},
		},
		{
			name: "unknown key in a section",
			in:   "outbox:\n  listen: 127.0.0.1:1\n  max_size: 1GiB\n",
			want: []string{"max_size", "line 3"},
		},
		{
			name: "unknown key inside a sink",
			in:   webhookSink("    bearer: abc\n"),
			want: []string{"bearer", "sinks[0]"},
		},
		{
			name: "misspelt key inside a sink's retry",
			in:   webhookSink("    retry:\n      max_attempt: 3\n"),
			want: []string{"max_attempt"},
		},
		{
			name: "circuit breaker probing faster at its slowest than at first",
			in:   webhookSink("    circuit_breaker: {probe_initial: 10s, probe_max: 1s}\n"),
			want: []string{"circuit_breaker.probe_max", "probe_initial"},
		},
		{
			name: "negative probe interval",
			in:   webhookSink("    circuit_breaker: {probe_initial: -1s}\n"),
			want: []string{"circuit_breaker.probe_initial"},
		},
		{
			name: "unknown sink type",
			in:   "sinks:\n  - name: k\n    type: sqs\n",
			want: []string{`unknown type "sqs"`, `"k"`, "line 2"},
		},
		{
			name: "missing sink type",
			in:   "sinks:\n  - name: k\n    url: https://example.com/\n",
			want: []string{"type is required", `"k"`},
		},
		{
			name: "missing environment variable",
			in:   webhookSink("    bearer_token: ${AUDIT_TOKEN}\n"),
			want: []string{"AUDIT_TOKEN", "not set"},
		},
		{
			name: "several missing environment variables",
			in:   webhookSink("    bearer_token: ${TOKEN_A}\n    secret: ${SECRET_B}\n"),
			env:  map[string]string{"OTHER": "x"},
			want: []string{"TOKEN_A", "SECRET_B"},
		},
		{
			name: "relative URL",
			in:   "sinks:\n  - name: a\n    type: webhook\n    url: /hooks\n",
			want: []string{"url", "/hooks", "sinks[0] (a)"},
		},
		{
			name: "URL with another scheme",
			in:   "sinks:\n  - name: a\n    type: webhook\n    url: ftp://example.com/\n",
			want: []string{"url", "ftp://example.com/"},
		},
		{
			name: "missing URL",
			in:   "sinks:\n  - name: a\n    type: webhook\n",
			want: []string{"url"},
		},
		{
			name: "duplicate sink names",
			in: "sinks:\n  - {name: a, type: webhook, url: 'https://one.example.com/'}\n" +
				"  - {name: a, type: webhook, url: 'https://two.example.com/'}\n",
			want: []string{"sinks[1]", `"a"`, "twice"},
		},
		{
			name: "invalid sink name",
			in:   "sinks:\n  - {name: 'my sink', type: webhook, url: 'https://example.com/'}\n",
			want: []string{"my sink"},
		},
		{
			name: "bad sync value",
			in:   "outbox:\n  sync: sometimes\n",
			want: []string{"outbox.sync", "sometimes"},
		},
		{
			name: "zero sync interval",
			in:   "outbox:\n  sync: 0s\n",
			want: []string{"outbox.sync", "0s"},
		},
		{
			name: "negative sync interval",
			in:   "outbox:\n  sync: -1s\n",
			want: []string{"outbox.sync", "-1s"},
		},
		{
			name: "bad format",
			in:   webhookSink("    format: xml\n"),
			want: []string{"sinks[0] (a)", `"xml"`},
		},
		{
			name: "bad event filter",
			in:   webhookSink("    events: ['VOLUME_[']\n"),
			want: []string{"VOLUME_["},
		},
		{
			name: "concurrency out of range",
			in:   webhookSink("    concurrency: 5000\n"),
			want: []string{"concurrency 5000"},
		},
		{
			name: "invalid retry policy",
			in:   webhookSink("    retry:\n      multiplier: 0.5\n"),
			want: []string{"retry.multiplier"},
		},
		{
			name: "bad cloudevents mode",
			in:   webhookSink("    format: cloudevents\n    cloudevents_mode: batch\n"),
			want: []string{"cloudevents_mode", "batch"},
		},
		{
			name: "bad byte size",
			in:   "outbox:\n  max_bytes: lots\n",
			want: []string{"lots", "line 2"},
		},
		{
			name: "event size above the limit",
			in:   "outbox:\n  max_event_size: 65MiB\n",
			want: []string{"max_event_size"},
		},
		{
			name: "attempt log too small to be useful",
			in:   "outbox:\n  attempt_log_max_bytes: 64KiB\n",
			want: []string{"attempt_log_max_bytes", "1MiB"},
		},
		{
			name: "bad log level",
			in:   "log:\n  level: verbose\n",
			want: []string{"log.level", "verbose"},
		},
		{
			name: "bad duration",
			in:   "shutdown_timeout: soon\n",
			want: []string{"soon"},
		},
		{
			name: "not YAML",
			in:   "node_id: [unclosed\n",
			want: []string{"line"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := config.Parse([]byte(tt.in), env(tt.env), builtin.Kinds())
			if err == nil {
				t.Fatalf("Parse = %+v, nil; want an error", f)
			}
			if f != nil {
				t.Errorf("Parse returned a config with its error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseErrorsDoNotShowGoTypes(t *testing.T) {
	// An unknown key is reported in the file's terms, not with the Go type
	// of the structure it was decoded into.
	for _, in := range []string{
		"node_name: n1\n",
		"outbox:\n  max_size: 1\n",
		"sinks:\n  - {name: a, type: webhook, url: 'https://example.com/', bearer: x}\n",
	} {
		_, err := config.Parse([]byte(in), env(nil), builtin.Kinds())
		if err == nil {
			t.Fatalf("Parse(%q) = nil error", in)
		}
		for _, leak := range []string{"struct", "config.", "in type", "not found"} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("Parse(%q) error %q contains %q", in, err, leak)
			}
		}
	}
}

func TestParseUnknownSinkKeyNamesItsLineInTheFile(t *testing.T) {
	in := "node_id: n1\nsinks:\n  - name: a\n    type: webhook\n    url: https://example.com/\n    bearer: abc\n"
	_, err := config.Parse([]byte(in), env(nil), builtin.Kinds())
	if err == nil {
		t.Fatal("Parse accepted an unknown sink key")
	}
	if !strings.Contains(err.Error(), "bearer") || !strings.Contains(err.Error(), "line 6") ||
		strings.Contains(err.Error(), "line 4") {
		t.Errorf("error %q, want it to name bearer and its line in the file, 6", err)
	}
}

func TestParseIgnoresEnvironmentReferencesInComments(t *testing.T) {
	in := "node_id: n1\n# bearer_token: ${OLD_TOKEN}\n"
	if _, err := config.Parse([]byte(in), env(nil), builtin.Kinds()); err != nil {
		t.Errorf("Parse = %v, want a variable in a comment to be ignored", err)
	}
}

func TestParseSecretErrorsDoNotEchoTheSecret(t *testing.T) {
	const secret = "whsec_this is not base64!"
	in := "sinks:\n  - name: a\n    type: webhook\n    url: https://example.com/\n    secret: ${S}\n"
	_, err := config.Parse([]byte(in), env(map[string]string{"S": secret}), builtin.Kinds())
	if err == nil {
		t.Fatal("Parse accepted a secret that is not base64")
	}
	if strings.Contains(err.Error(), "this is not base64") {
		t.Errorf("error %q echoes the secret", err)
	}
}

func TestParseExpandsEnvironmentReferences(t *testing.T) {
	in := "node_id: ${NODE}-${ZONE}\nsinks:\n  - name: a\n    type: webhook\n    url: ${URL}\n    headers:\n      X-Api-Key: ${KEY}\n"
	vars := map[string]string{"NODE": "n1", "ZONE": "eu", "URL": "https://example.com/x", "KEY": ""}
	f, err := config.Parse([]byte(in), env(vars), builtin.Kinds())
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if f.NodeID != "n1-eu" {
		t.Errorf("NodeID = %q, want n1-eu", f.NodeID)
	}
	w := f.Sinks[0].Settings.(*webhook.Config)
	if w.URL != "https://example.com/x" {
		t.Errorf("URL = %q", w.URL)
	}
	if got := w.Headers; !maps.Equal(got, map[string]string{"X-Api-Key": ""}) {
		t.Errorf("Headers = %v, want the set-but-empty variable to expand to an empty value", got)
	}
}

func TestParseKeepsEnvironmentValuesVerbatim(t *testing.T) {
	in := "sinks:\n  - name: a\n    type: webhook\n    url: https://example.com/\n    bearer_token: ${TOKEN}\n"
	for _, token := range []string{"abc #def", "*star", "key: value", "'quoted'"} {
		f, err := config.Parse([]byte(in), env(map[string]string{"TOKEN": token}), builtin.Kinds())
		if err != nil {
			t.Errorf("Parse with TOKEN=%q: %v", token, err)
			continue
		}
		if got := f.Sinks[0].Settings.(*webhook.Config).BearerToken; got != token {
			t.Errorf("BearerToken = %q, want %q verbatim", got, token)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    config.ByteSize
		wantErr bool
	}{
		{"512", 512, false},
		{"0", 0, false},
		{"1048576", 1 << 20, false},
		{"100B", 100, false},
		{"512KiB", 512 << 10, false},
		{"1MiB", 1 << 20, false},
		{"10GiB", 10 << 30, false},
		{"2TiB", 2 << 40, false},
		{"1.5MiB", 3 << 19, false},
		{"1KB", 1000, false},
		{"5MB", 5_000_000, false},
		{"2GB", 2_000_000_000, false},
		{"1TB", 1_000_000_000_000, false},
		{" 10 GiB ", 10 << 30, false},
		{"", 0, true},
		{"lots", 0, true},
		{"GiB", 0, true},
		{"-1", 0, true},
		{"-1MiB", 0, true},
		{"10XB", 0, true},
		{"10gib", 0, true},
		{"1.5", 0, true},
		{"10 GiB extra", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := config.ParseByteSize(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseByteSize(%q) = %d, %v; want error %v", tt.in, got, err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("ParseByteSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
			if tt.wantErr && !strings.Contains(err.Error(), tt.in) {
				t.Errorf("error %q does not quote the input %q", err, tt.in)
			}
		})
	}
}

func TestParseByteSizeRejectsValuesThatAreNotSizes(t *testing.T) {
	for _, in := range []string{"NaNKiB", "InfMiB", "1e10TiB", "9223372036854775807KiB"} {
		if got, err := config.ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, nil; want an error", in, got)
		}
	}
}

func TestByteSizeInYAML(t *testing.T) {
	tests := []struct {
		in   string
		want config.ByteSize
	}{
		{"max_bytes: 1048576", 1 << 20},
		{"max_bytes: 1MiB", 1 << 20},
		{"max_bytes: \"2GB\"", 2_000_000_000},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			f, err := config.Parse([]byte("outbox:\n  "+tt.in+"\n"), env(nil), builtin.Kinds())
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if f.Outbox.MaxBytes != tt.want {
				t.Errorf("MaxBytes = %d, want %d", f.Outbox.MaxBytes, tt.want)
			}
		})
	}
}

func TestSyncPolicy(t *testing.T) {
	tests := []struct {
		sync         string
		wantAlways   bool
		wantInterval time.Duration
		wantErr      bool
	}{
		{"always", true, 0, false},
		{"1s", false, time.Second, false},
		{"250ms", false, 250 * time.Millisecond, false},
		{"Always", false, 0, true},
		{"never", false, 0, true},
		{"0s", false, 0, true},
		{"-1s", false, 0, true},
		{"10", false, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.sync, func(t *testing.T) {
			always, interval, err := config.Outbox{Sync: tt.sync}.SyncPolicy()
			if (err != nil) != tt.wantErr || always != tt.wantAlways || interval != tt.wantInterval {
				t.Errorf("SyncPolicy(%q) = %v, %s, %v; want %v, %s, error %v",
					tt.sync, always, interval, err, tt.wantAlways, tt.wantInterval, tt.wantErr)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/courier.yaml"
	if err := os.WriteFile(path, []byte("node_id: from-file\noutbox:\n  sync: 2s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(path, builtin.Kinds())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if f.NodeID != "from-file" || f.Outbox.Sync != "2s" {
		t.Errorf("Load = %+v", *f)
	}

	bad := dir + "/bad.yaml"
	if err := os.WriteFile(bad, []byte("bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(bad, builtin.Kinds()); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("Load(bad) = %v, want an error naming the file and the key", err)
	}
	if _, err := config.Load(dir+"/missing.yaml", builtin.Kinds()); err == nil {
		t.Error("Load of a missing file = nil error")
	}
}

func TestParseRejectsRetryMaxAgeNotBelowOutboxMaxAge(t *testing.T) {
	in := "outbox: {max_age: 48h}\nsinks:\n  - name: a\n    type: webhook\n    url: https://example.com/\n    retry: {max_age: 72h}\n"
	_, err := config.Parse([]byte(in), env(nil), builtin.Kinds())
	if err == nil || !strings.Contains(err.Error(), "retry.max_age") || !strings.Contains(err.Error(), "outbox.max_age") {
		t.Fatalf("err = %v, want retry.max_age must be below outbox.max_age", err)
	}
}

func TestParseAMQPAndKafkaSinks(t *testing.T) {
	in := `sinks:
  - name: bus
    type: amqp
    url: amqp://guest:${PW}@127.0.0.1:5672/
    exchange: cloudstack-events
    declare: true
  - name: log
    type: kafka
    brokers: [127.0.0.1:9092]
    topic: courier.{type}
`
	f, err := config.Parse([]byte(in), env(map[string]string{"PW": "guest"}), builtin.Kinds())
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := f.Sinks[0].Settings.(*amqp.Config); !ok || a.Exchange != "cloudstack-events" || a.ExchangeType != "topic" {
		t.Errorf("amqp sink = %+v", f.Sinks[0].Settings)
	}
	if k, ok := f.Sinks[1].Settings.(*kafka.Config); !ok || k.Topic != "courier.{type}" {
		t.Errorf("kafka sink = %+v", f.Sinks[1].Settings)
	}
	_, err = config.Parse([]byte("sinks:\n  - name: bus\n    type: amqp\n    url: amqp://127.0.0.1/\n    exchange: x\n    bootstrap: y\n"), env(nil), builtin.Kinds())
	if err == nil || !strings.Contains(err.Error(), `unknown key "bootstrap"`) || !strings.Contains(err.Error(), "line 6") {
		t.Errorf("unknown amqp key: err = %v", err)
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{"200/s": 200, "6000/m": 100, "3600/h": 1} {
		f, err := config.Parse([]byte("sinks:\n  - name: a\n    type: webhook\n    url: https://example.com/\n    rate: "+in+"\n"), env(nil), builtin.Kinds())
		if err != nil {
			t.Fatalf("rate %s: %v", in, err)
		}
		if got, _, _ := f.Sinks[0].RateLimit(); got != want {
			t.Errorf("rate %s = %g/s, want %g", in, got, want)
		}
	}
	for _, bad := range []string{"fast", "10", "-1/s", "5/d"} {
		if _, err := config.Parse([]byte("sinks:\n  - name: a\n    type: webhook\n    url: https://example.com/\n    rate: "+bad+"\n"), env(nil), builtin.Kinds()); err == nil {
			t.Errorf("rate %q accepted", bad)
		}
	}
}

func TestClusterAndReplicasValidation(t *testing.T) {
	env := func(string) (string, bool) { return "", false }
	for _, tt := range []struct {
		yaml, wantErr string
		replicas      int
	}{
		{"cluster: {name: c, listen: 127.0.0.1:6244, routes: [a:6244, b:6244]}\n", "", 3},
		{"cluster: {name: c, listen: 127.0.0.1:6244, routes: [b:6244]}\n", "", 2},
		{"cluster: {name: c, listen: 127.0.0.1:6244, routes: [127.0.0.1:6244, b:6244]}\n", "", 2},
		{"cluster: {listen: 127.0.0.1:6244, routes: [b:6244]}\n", "cluster.name is required", 0},
		{"cluster: {name: c, listen: nowhere, routes: [b:6244]}\n", "cluster.listen", 0},
		{"cluster: {name: c, listen: 127.0.0.1:6244}\n", "cluster.routes", 0},
		{"cluster: {name: c, listen: 127.0.0.1:6244, routes: [b:6244], replicas: 7}\n", "cluster.replicas 7", 0},
		{"cluster: {name: c, listen: 127.0.0.1:6244, routes: [b:6244]}\noutbox: {url: nats://x:4222}\n", "exclude each other", 0},
		{"outbox: {url: nats://x:4222, replicas: 3}\n", "", 3},
		{"outbox: {replicas: 3}\n", "outbox.replicas 3: only with outbox.url", 0},
		{"", "", 1},
	} {
		f, err := config.Parse([]byte(tt.yaml), env, builtin.Kinds())
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tt.yaml, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%q: error %v, want one mentioning %q", tt.yaml, err, tt.wantErr)
		case err == nil && f.Replication() != tt.replicas:
			t.Errorf("%q: replication %d, want %d", tt.yaml, f.Replication(), tt.replicas)
		}
	}
}

func TestSinkErrorsDoNotQuoteExpandedSecrets(t *testing.T) {
	env := func(k string) (string, bool) { return "AKIA-very-secret", k == "SECRET" }
	_, err := config.ParseSink([]byte("name: s\ntype: webhook\nurl: ${SECRET}\n"), env, config.BuiltinSinkDefaults(720*time.Hour), builtin.Kinds())
	if err == nil || strings.Contains(err.Error(), "AKIA") {
		t.Fatalf("error %v: want an error that does not show the expanded value", err)
	}
	_, err = config.ParseSink([]byte("name: s\ntype: webhook\nurl: http://x/${SECRET}\ntimeout: -1s\n"), env, config.BuiltinSinkDefaults(720*time.Hour), builtin.Kinds())
	if err == nil || strings.Contains(err.Error(), "AKIA") || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("error %v: want the timeout error, without the secret", err)
	}
}

func TestRuntimeDefinitionsMayNameOnlyAllowedVariables(t *testing.T) {
	def := []byte("name: a\ntype: webhook\n# ${IN_A_COMMENT}\nurl: https://example.com/${PATH_PART}\nbearer_token: ${TOKEN}\n")
	if err := config.CheckRuntimeEnv(def, []string{"TOKEN", "PATH_PART"}); err != nil {
		t.Errorf("allowed variables: %v", err)
	}
	err := config.CheckRuntimeEnv(def, []string{"TOKEN"})
	if err == nil || !strings.Contains(err.Error(), "${PATH_PART}") || strings.Contains(err.Error(), "IN_A_COMMENT") || !strings.Contains(err.Error(), "TOKEN are allowed") {
		t.Errorf("PATH_PART not allowed: %v", err)
	}
	if err := config.CheckRuntimeEnv(def, nil); err == nil || !strings.Contains(err.Error(), "none is allowed") {
		t.Errorf("nothing allowed: %v", err)
	}
}

func TestWebhookSettingsChangeThePolicy(t *testing.T) {
	f, err := config.Parse([]byte("webhook_allow: [10.20.0.0/16]\n"), env(nil), builtin.Kinds())
	if err != nil {
		t.Fatal(err)
	}
	s := f.BaseSettings()
	if got, _ := s.Get("webhook-allow"); got != "10.20.0.0/16" {
		t.Errorf("webhook-allow from the file = %q", got)
	}
	if err := s.Set("webhook-allow", "127.0.0.1/32, ::1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get("webhook-allow"); got != "127.0.0.1/32,::1/128" {
		t.Errorf("webhook-allow = %q", got)
	}
	if err := s.Set("webhook-allow", "everything"); err == nil {
		t.Error("webhook-allow everything accepted")
	}
	if err := s.Set("webhook-https-only", "true"); err != nil || !s.Sink.Webhook.HTTPSOnly {
		t.Errorf("webhook-https-only true: %v", err)
	}
	if err := s.Set("webhook-allow", ""); err != nil || len(s.Sink.Webhook.Allow) != 0 {
		t.Errorf("webhook-allow emptied: %v %v", err, s.Sink.Webhook.Allow)
	}
}

func TestPublicListenersWithAuthOrInsecureAreAccepted(t *testing.T) {
	for _, y := range []string{
		"outbox:\n  listen: 0.0.0.0:4244\n  auth: {user: courier, password: p}\n",
		"outbox:\n  listen: 0.0.0.0:4244\n  insecure: true\n",
		"outbox:\n  listen: 127.0.0.1:4244\n",
	} {
		if _, err := config.Parse([]byte(y), env(nil), builtin.Kinds()); err != nil {
			t.Errorf("%q: %v", y, err)
		}
	}
}

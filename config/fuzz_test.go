package config_test

import (
	"testing"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/sinks/builtin"
)

func fuzzEnv(name string) (string, bool) {
	if name == "SET" {
		return "value", true
	}
	return "", false
}

// FuzzParse: any file parses to a valid configuration or an error, never a
// panic, and what it accepts passes its own validation again.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"",
		"node_id: n1\noutbox:\n  max_age: 24h\n  max_bytes: 1GiB\n",
		"sinks:\n  - name: a\n    type: webhook\n    url: https://example.com/${SET}\n    retry: {initial: 1s, max_attempts: 3}\n",
		"sinks:\n  - name: q\n    type: amqp\n    url: amqp://guest:guest@127.0.0.1:5672/\n    exchange: x\n",
		"sinks:\n  - name: k\n    type: kafka\n    brokers: [127.0.0.1:9092]\n    topic: \"t.{type}\"\n",
		"cluster:\n  name: c\n  listen: 127.0.0.1:6222\n  routes: [nats-route://127.0.0.1:6222]\n",
		"ingest:\n  listen: 127.0.0.1:8080\n  tokens: [{token: 0123456789abcdef, account: a}]\nwebhook_allow: [10.0.0.0/8]\n",
		"outbox:\n  max_age: -1h\n", "shutdown_timeout: 1ns\n", "[1, 2]\n", "a: &x [*x]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := config.Parse(b, fuzzEnv, builtin.Kinds())
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted, then invalid: %v\n%s", err, b)
		}
	})
}

// FuzzParseSink: a sink definition posted to the admin API parses or is
// refused, never panics; an accepted one names only allowed variables.
func FuzzParseSink(f *testing.F) {
	for _, s := range []string{
		`{"name":"hook","type":"webhook","url":"https://example.com/hook","bearer_token":"${SET}"}`,
		"name: q\ntype: amqp\nurl: amqp://127.0.0.1/\nexchange: x\nrouting_key: \"{type}.{key}\"\n",
		"name: k\ntype: kafka\nbrokers: [b:9092]\ntopic: t\nsasl: {mechanism: plain, username: u, password: p}\n",
		`{"name":"x","type":"webhook","url":"http://169.254.169.254/"}`,
		`{"name":"x","type":"webhook","url":"https://e.com/","headers":{"X-A":"${HOME}"}}`,
		`{"name":"x","type":"mqtt"}`, `[]`, `{"name":"x","type":"webhook","url":"https://e.com/","retry":{"jitter":2}}`,
	} {
		f.Add([]byte(s))
	}
	defaults := config.BuiltinSinkDefaults(config.DefaultMaxAge)
	f.Fuzz(func(t *testing.T, def []byte) {
		if err := config.CheckRuntimeEnv(def, []string{"SET"}); err != nil {
			return
		}
		if _, err := config.ParseSink(def, fuzzEnv, defaults, builtin.Kinds()); err != nil {
			return
		}
	})
}

package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
)

// waitFor bounds waiting for a running node to apply a change.
const waitFor = 20 * time.Second

func TestSinksAddListDelChangeTheRunningNode(t *testing.T) {
	d := startDLQNode(t)
	hook := testutil.NewReceiver(t)

	// Flags may come after the arguments, as an operator types them.
	r := cli(t, "sinks", "add", "--config", d.cfg, "hook", hook.URL()+"?key=secret", "--bearer-token", "tok3n", "--events", "VOLUME_*")
	if r.err != nil || !strings.Contains(r.stdout, "sink hook (webhook, "+hook.URL()+") defined") {
		t.Fatalf("sinks add: %v\n%s", r.err, r.stdout)
	}
	if strings.Contains(r.stdout, "secret") || strings.Contains(r.stdout, "tok3n") {
		t.Errorf("sinks add printed a credential:\n%s", r.stdout)
	}
	testutil.Eventually(t, waitFor, func() bool { return d.node.Loop("hook") != nil }, "node runs the added sink")
	p := d.node.Publisher(t)
	if _, err := p.Emit(context.Background(), event.Envelope{Type: "VOLUME_CREATE"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Emit(context.Background(), event.Envelope{Type: "PEER_ATTACH"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitFor, func() bool { return hook.Distinct() == 1 }, "the added sink received the matching event")
	if got := hook.Requests()[0].Header.Get("Authorization"); got != "Bearer tok3n" {
		t.Errorf("Authorization = %q", got)
	}

	r = cli(t, "sinks", "add", "--config", d.cfg, "hook", hook.URL())
	wantUsageError(t, r, "sink already exists: hook")
	r = cli(t, "sinks", "add", "--config", d.cfg, "bad", "ftp://example.com/x")
	wantUsageError(t, r, "url")
	r = cli(t, "sinks", "add", "--config", d.cfg, "-f", writeFile(t, "name: odd\ntype: carrier-pigeon\n"))
	wantUsageError(t, r, `unknown type "carrier-pigeon"`)

	r = cli(t, "sinks", "list", "--config", d.cfg)
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^audit\s+webhook\s+http://\S+/listen\s+\*\s+file on dlq-node`),
		regexp.MustCompile(`(?m)^hook\s+webhook\s+http://\S+/listen\s+VOLUME_\*\s+api on cli-node`),
	} {
		if !want.MatchString(r.stdout) {
			t.Errorf("sinks list lacks %s:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "secret") || strings.Contains(r.stdout, "tok3n") {
		t.Errorf("sinks list printed a credential:\n%s", r.stdout)
	}

	r = cli(t, "sinks", "del", "--config", d.cfg, "hook")
	if r.err != nil || !strings.Contains(r.stdout, "sink hook deleted") {
		t.Fatalf("sinks del: %v\n%s", r.err, r.stdout)
	}
	testutil.Eventually(t, waitFor, func() bool { return d.node.Loop("hook") == nil }, "node stopped the deleted sink")
	nc, err := nats.Connect(d.node.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.Consumer(context.Background(), "COURIER_OUTBOX", "sink-hook"); err == nil {
		t.Error("the deleted sink's consumer still holds events")
	}
	wantRuntimeError(t, cli(t, "sinks", "del", "--config", d.cfg, "hook"), "no such sink: hook")
}

// --format cloudevents-binary, which the flag's help offers, is format
// cloudevents with cloudevents_mode binary: attributes in ce- headers.
func TestSinksAddCloudEventsBinary(t *testing.T) {
	d := startDLQNode(t)
	hook := testutil.NewReceiver(t)
	r := cli(t, "sinks", "add", "--config", d.cfg, "ce", hook.URL(), "--format", "cloudevents-binary")
	if r.err != nil {
		t.Fatalf("sinks add --format cloudevents-binary: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	testutil.Eventually(t, waitFor, func() bool { return d.node.Loop("ce") != nil }, "node runs the added sink")
	if _, err := d.node.Publisher(t).Emit(context.Background(), event.Envelope{ID: "ce-1", Type: "VM.CREATE"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitFor, func() bool { return hook.Distinct() == 1 }, "the sink received the event")
	if got := hook.Requests()[0].Header.Get("ce-id"); got != "ce-1" {
		t.Errorf("ce-id header = %q, want ce-1 (binary mode)", got)
	}
}

func TestConfigSetGetResetApplyOnTheRunningNode(t *testing.T) {
	d := startDLQNode(t)
	r := cli(t, "config", "get", "--config", d.cfg)
	if r.err != nil || !regexp.MustCompile(`(?m)^concurrency\s+16\s+default\s`).MatchString(r.stdout) {
		t.Fatalf("config get: %v\n%s", r.err, r.stdout)
	}
	r = cli(t, "config", "set", "--config", d.cfg, "concurrency", "4")
	if r.err != nil {
		t.Fatalf("config set: %v %s", r.err, r.stderr)
	}
	// The command waits for the node and shows what it applies, as sinks
	// add does.
	if !regexp.MustCompile(`(?m)^NODE\s+NODE STATUS\s+SETTING STATUS\n\S+\s+UP\s+APPLIED \(concurrency 4\)$`).MatchString(r.stdout) {
		t.Errorf("config set printed:\n%s\nwant the node's row, APPLIED (concurrency 4)", r.stdout)
	}
	testutil.Eventually(t, waitFor, func() bool { return d.node.SinkConfig("audit").Concurrency == 4 }, "node applied concurrency 4")
	r = cli(t, "config", "get", "--config", d.cfg, "concurrency")
	if !regexp.MustCompile(`(?m)^concurrency\s+4\s+set\s`).MatchString(r.stdout) || strings.Contains(r.stdout, "log-level") {
		t.Errorf("config get concurrency:\n%s", r.stdout)
	}
	wantUsageError(t, cli(t, "config", "set", "--config", d.cfg, "retry-max-age", "9999h"), "must be below outbox.max_age")
	wantUsageError(t, cli(t, "config", "set", "--config", d.cfg, "colour", "red"), `unknown setting "colour"`)
	wantUsageError(t, cli(t, "config", "set", "--config", d.cfg, "log-level", "loud"), "want debug, info, warn or error")

	r = cli(t, "config", "reset", "--config", d.cfg, "--json", "all")
	if r.err != nil {
		t.Fatalf("config reset: %v", r.err)
	}
	if !strings.Contains(r.stdout, `"setting_status":"APPLIED"`) || strings.Contains(r.stdout, "reset to") {
		t.Errorf("config reset --json printed %q, want only the node's JSON row, APPLIED", r.stdout)
	}
	testutil.Eventually(t, waitFor, func() bool { return d.node.SinkConfig("audit").Concurrency == 16 }, "node back to the default concurrency")
}

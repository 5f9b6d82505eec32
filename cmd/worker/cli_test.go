package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/status"
)

const cliWait = 20 * time.Second

// cliResult is what one dispatch produced.
type cliResult struct {
	err            error
	stdout, stderr string
}

// cli runs the worker command in-process.
func cli(t *testing.T, args ...string) cliResult {
	t.Helper()
	// As long as an operator would wait before running it again.
	return cliWithin(t, 10*time.Second, args...)
}

// cliWithin is cli for a command given longer than an operator's patience
// (one that waits for nodes, told to with --wait).
func cliWithin(t *testing.T, limit time.Duration, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := dispatch(ctx, args, &stdout, &stderr)
	return cliResult{err: err, stdout: stdout.String(), stderr: stderr.String()}
}

// writeFile writes a configuration file and returns its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "courier.yaml")
	if !strings.Contains(content, "webhook_allow:") {
		// The tests' receivers listen on loopback. Appended, so that the
		// lines errors name stay where the test wrote them.
		content = strings.TrimSuffix(content, "\n") + "\nwebhook_allow: [127.0.0.0/8]\n"
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func wantUsageError(t *testing.T, r cliResult, mention ...string) {
	t.Helper()
	var ue usageError
	if !errors.As(r.err, &ue) {
		t.Fatalf("err = %v (%T), want a usageError (exit status 2)", r.err, r.err)
	}
	for _, m := range mention {
		if !strings.Contains(r.err.Error(), m) {
			t.Errorf("error %q does not mention %q", r.err, m)
		}
	}
}

// wantRuntimeError checks for an error that is not a usage error (exit 1).
func wantRuntimeError(t *testing.T, r cliResult, mention ...string) {
	t.Helper()
	if r.err == nil {
		t.Fatalf("no error; stdout %q", r.stdout)
	}
	var ue usageError
	if errors.As(r.err, &ue) {
		t.Errorf("err = %v is a usageError; want a runtime failure (exit status 1)", r.err)
	}
	for _, m := range mention {
		if !strings.Contains(r.err.Error(), m) {
			t.Errorf("error %q does not mention %q", r.err, m)
		}
	}
}

func TestNoCommandOrUnknownCommandIsUsageErrorWithUsageText(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no arguments", nil, "no command given"},
		{"unknown command", []string{"start"}, `unknown command "start"`},
		{"flag instead of command", []string{"--config", "x.yaml"}, `unknown command "--config"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, tt.args...)
			wantUsageError(t, r, tt.want)
			if !strings.HasPrefix(r.stderr, "usage: worker <command>") || !strings.Contains(r.stderr, "dlq replay") {
				t.Errorf("stderr should hold the usage text, got %q", r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
		})
	}
}

func TestIncompleteSubcommandIsUsageError(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"sinks without verb", []string{"sinks"}, "worker sinks list | add NAME URL"},
		{"sinks with another verb", []string{"sinks", "purge"}, "worker sinks list | add NAME URL"},
		{"sinks add without URL", []string{"sinks", "add", "hook"}, "usage: worker sinks add NAME URL"},
		{"sinks del without name", []string{"sinks", "del"}, "usage: worker sinks del NAME"},
		{"config without verb", []string{"config"}, "worker config get [NAME]"},
		{"config set without value", []string{"config", "set", "log-level"}, "worker config get [NAME]"},
		{"dlq without verb", []string{"dlq"}, "worker dlq list|replay"},
		{"dlq with another verb", []string{"dlq", "purge"}, "worker dlq list|replay"},
		{"check with an undefined flag", []string{"check", "--colour", "red"}, "colour"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantUsageError(t, cli(t, tt.args...), tt.want)
		})
	}
}

func TestHelpPrintsUsageToStdout(t *testing.T) {
	for _, arg := range []string{"help", "-h", "--help"} {
		r := cli(t, arg)
		if r.err != nil || !strings.HasPrefix(r.stdout, "usage: worker <command>") {
			t.Errorf("%s: err %v, stdout %q; want usage on stdout", arg, r.err, r.stdout)
		}
	}
}

func TestVersionPrintsCourierWorker(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		r := cli(t, arg)
		if r.err != nil {
			t.Fatalf("%s: %v", arg, r.err)
		}
		if r.stdout != "courier worker "+version+"\n" {
			t.Errorf("%s: stdout = %q, want %q", arg, r.stdout, "courier worker "+version+"\n")
		}
	}
}

const validConfig = `node_id: cli-node
log: {level: info, format: json}
sinks:
  - name: audit
    type: webhook
    url: http://127.0.0.1:9/listen
  - name: billing
    type: webhook
    url: https://billing.example.com/hooks
`

func TestCheckValidConfigPrintsOK(t *testing.T) {
	path := writeFile(t, validConfig)
	r := cli(t, "check", "--config", path)
	if r.err != nil {
		t.Fatalf("check: %v", r.err)
	}
	if want := path + ": ok (2 sinks)\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
}

func TestCheckTakesConfigFromCourierConfig(t *testing.T) {
	path := writeFile(t, validConfig)
	t.Setenv("COURIER_CONFIG", path)
	r := cli(t, "check")
	if r.err != nil || !strings.Contains(r.stdout, path+": ok") {
		t.Errorf("check without --config: err %v, stdout %q; want %s checked", r.err, r.stdout, path)
	}
}

func TestCheckUnknownKeyNamesKeyAndLine(t *testing.T) {
	path := writeFile(t, `node_id: cli-node
outbox:
  listen: 127.0.0.1:4244
  max_byte: 1GiB
`)
	r := cli(t, "check", "--config", path)
	wantUsageError(t, r, `unknown key "max_byte"`, "line 4", path)
	if r.stdout != "" {
		t.Errorf("stdout = %q, want nothing for an invalid config", r.stdout)
	}
}

func TestCheckUnknownSinkKeyNamesKeyAndLine(t *testing.T) {
	path := writeFile(t, `sinks:
  - name: audit
    type: webhook
    url: http://127.0.0.1:9/listen
    bearer: abc
`)
	wantUsageError(t, cli(t, "check", "--config", path), `unknown key "bearer"`, "line 5")
}

func TestCheckMissingFileFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	r := cli(t, "check", "--config", path)
	if r.err == nil {
		t.Fatalf("check of a missing file succeeded: %q", r.stdout)
	}
	if !strings.Contains(r.err.Error(), "nope.yaml") {
		t.Errorf("error %q should name the file", r.err)
	}
	if r.stdout != "" {
		t.Errorf("stdout = %q, want nothing", r.stdout)
	}
}

func sinkConfig(url string) string {
	return "node_id: cli-node\nsinks:\n  - name: audit\n    type: webhook\n    url: " + url + "\n    timeout: 2s\n    bearer_token: s3cret\n"
}

func TestSinksTestSendsEventWithBearerAndPrintsOK(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	path := writeFile(t, sinkConfig(rcv.URL()))
	r := cli(t, "sinks", "test", "--config", path, "audit")
	if r.err != nil {
		t.Fatalf("sinks test: %v (stdout %q)", r.err, r.stdout)
	}
	reqs := rcv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(reqs))
	}
	d := reqs[0]
	if got := d.Header.Get("Authorization"); got != "Bearer s3cret" {
		t.Errorf("Authorization = %q, want the configured bearer token", got)
	}
	var body struct {
		ID   string `json:"id"`
		Type string `json:"type"`
		Node string `json:"node"`
	}
	if err := json.Unmarshal(d.Body, &body); err != nil {
		t.Fatalf("body %s: %v", d.Body, err)
	}
	if body.Type != "COURIER_TEST" || body.Node != "cli-node" || body.ID == "" || body.ID != d.ID {
		t.Errorf("test event = %s (webhook-id %q), want a COURIER_TEST from cli-node", d.Body, d.ID)
	}
	res := sinkResult(t, r.stdout)
	if len(res) < 4 || res[0] != "cli-node" || res[1] != "audit" || res[2] != "OK" || !strings.Contains(strings.Join(res[3:], " "), "event "+d.ID) {
		t.Errorf("result = %q, want cli-node, audit, OK with the event id %s", r.stdout, d.ID)
	}
}

// sinkResult checks the output of sinks test (a NODE SINK RESULT header
// and one row) and returns the row's fields.
func sinkResult(t *testing.T, stdout string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "NODE SINK RESULT" {
		t.Fatalf("stdout = %q, want a NODE SINK RESULT header and one row", stdout)
	}
	return strings.Fields(lines[1])
}

func TestSinksTestRefusedPrintsFailedAndErrors(t *testing.T) {
	tests := []struct {
		status int
		kind   string
	}{
		{http.StatusInternalServerError, "FAILED"},
		{http.StatusBadRequest, "FAILED"},
		{http.StatusUnauthorized, "FAILED"},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			rcv := testutil.NewReceiver(t)
			rcv.Answer(func(testutil.Delivery, int) (int, http.Header) { return tt.status, nil })
			path := writeFile(t, sinkConfig(rcv.URL()))
			r := cli(t, "sinks", "test", "--config", path, "audit")
			wantRuntimeError(t, r, "audit")
			if res := sinkResult(t, r.stdout); len(res) < 3 || res[0] != "cli-node" || res[1] != "audit" || res[2] != tt.kind {
				t.Errorf("stdout = %q, want a %s row for sink audit", r.stdout, tt.kind)
			} else if want := fmt.Sprint(tt.status); !strings.Contains(r.stdout, want) {
				t.Errorf("stdout = %q, want the status %s", r.stdout, want)
			}
			if rcv.Distinct() != 1 {
				t.Errorf("receiver got %d distinct events, want the one test event", rcv.Distinct())
			}
		})
	}
}

func TestSinksTestUnreachableSinkFails(t *testing.T) {
	path := writeFile(t, sinkConfig("http://127.0.0.1:1/listen"))
	r := cli(t, "sinks", "test", "--config", path, "audit")
	wantRuntimeError(t, r)
	if res := sinkResult(t, r.stdout); len(res) < 3 || res[2] != "FAILED" {
		t.Errorf("stdout = %q, want a FAILED row", r.stdout)
	}
}

func TestSinksTestBadInvocationIsUsageError(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	path := writeFile(t, sinkConfig(rcv.URL()))
	t.Run("unknown sink", func(t *testing.T) {
		wantUsageError(t, cli(t, "sinks", "test", "--config", path, "billing"), `no sink named "billing"`)
	})
	t.Run("no sink name", func(t *testing.T) {
		wantUsageError(t, cli(t, "sinks", "test", "--config", path), "NAME")
	})
	t.Run("two sink names", func(t *testing.T) {
		wantUsageError(t, cli(t, "sinks", "test", "--config", path, "audit", "billing"), "NAME")
	})
	t.Run("missing config", func(t *testing.T) {
		wantUsageError(t, cli(t, "sinks", "test", "--config", filepath.Join(t.TempDir(), "x.yaml"), "audit"), "x.yaml")
	})
	if n := len(rcv.Requests()); n != 0 {
		t.Errorf("receiver got %d requests from bad invocations, want none", n)
	}
}

// dlqNode is a running node whose sink "audit" refuses every event with 400
// (so each is dead-lettered at once), and a CLI configuration that points
// at its outbox.
type dlqNode struct {
	node *testutil.Node
	rcv  *testutil.Receiver
	cfg  string
}

func startDLQNode(t *testing.T) *dlqNode {
	t.Helper()
	rcv := testutil.NewReceiver(t)
	rcv.Answer(func(testutil.Delivery, int) (int, http.Header) { return http.StatusBadRequest, nil })
	sinks := "sinks:\n  - name: audit\n    type: webhook\n    url: " + rcv.URL() + "\n    retry: {initial: 20ms, max_interval: 200ms, max_attempts: 3}\n"
	n := testutil.StartNode(t, "node_id: dlq-node\n"+sinks, nil)
	cfg := writeFile(t, "node_id: cli-node\noutbox: {url: \""+n.URL()+"\"}\n"+sinks)
	return &dlqNode{node: n, rcv: rcv, cfg: cfg}
}

// deadLetter emits events and waits until the sink has dead-lettered them.
func (d *dlqNode) deadLetter(t *testing.T, ids ...string) {
	t.Helper()
	p := d.node.Publisher(t)
	before := d.node.Loop("audit").Stats().DeadLettered.Load()
	for _, id := range ids {
		if _, err := p.Emit(context.Background(), event.Envelope{ID: id, Type: "VOLUME_CREATE", Data: json.RawMessage(`{"name":"gv1"}`)}); err != nil {
			t.Fatalf("emit %s: %v", id, err)
		}
	}
	want := before + uint64(len(ids))
	testutil.Eventually(t, cliWait, func() bool { return d.node.Loop("audit").Stats().DeadLettered.Load() == want }, "%d events dead-lettered", len(ids))
}

func (d *dlqNode) accept() {
	d.rcv.Answer(func(testutil.Delivery, int) (int, http.Header) { return http.StatusOK, nil })
}

// listed returns the event ids dlq list --json reports for sink audit.
func (d *dlqNode) listed(t *testing.T) []outbox.DeadLetter {
	t.Helper()
	r := cli(t, "dlq", "list", "--config", d.cfg, "--sink", "audit", "--json")
	if r.err != nil {
		t.Fatalf("dlq list --json: %v", r.err)
	}
	var out []outbox.DeadLetter
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	for dec.More() {
		var dl outbox.DeadLetter
		if err := dec.Decode(&dl); err != nil {
			t.Fatalf("dlq list --json output %q: %v", r.stdout, err)
		}
		out = append(out, dl)
	}
	return out
}

func eventIDs(list []outbox.DeadLetter) []string {
	ids := []string{}
	for _, dl := range list {
		ids = append(ids, dl.Event.ID)
	}
	return ids
}

func TestDLQListShowsDeadLettersAsTable(t *testing.T) {
	d := startDLQNode(t)
	d.deadLetter(t, "ev-1", "ev-2")

	r := cli(t, "dlq", "list", "--config", d.cfg, "--sink", "audit")
	if r.err != nil {
		t.Fatalf("dlq list: %v", r.err)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("stdout = %q, want a header and two rows", r.stdout)
	}
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "SEQ EVENT ID TYPE ATTEMPTS STATUS DEAD AT REASON" {
		t.Errorf("header = %q", lines[0])
	}
	// Rows are in dead-letter order, which follows delivery, not emit order.
	rows := map[string]string{}
	for i, line := range lines[1:] {
		f := strings.Fields(line)
		// SEQ, EVENT ID, TYPE, ATTEMPTS, STATUS, DEAD AT, then the reason.
		if len(f) < 7 || f[2] != "VOLUME_CREATE" || f[3] != "1" || f[4] != "400" || strings.Join(f[6:], " ") != "permanent failure" {
			t.Errorf("row %d = %q, want VOLUME_CREATE, 1 attempt, status 400, permanent failure", i+1, line)
			continue
		}
		if _, err := time.Parse(time.RFC3339, f[5]); err != nil {
			t.Errorf("row %d: DEAD AT %q is not RFC 3339: %v", i+1, f[5], err)
		}
		rows[f[1]] = line
	}
	for _, id := range []string{"ev-1", "ev-2"} {
		if rows[id] == "" {
			t.Errorf("no row for event %s in %q", id, r.stdout)
		}
	}
}

func TestDLQListJSONGivesOneObjectPerLine(t *testing.T) {
	d := startDLQNode(t)
	d.deadLetter(t, "js-1", "js-2", "js-3")

	r := cli(t, "dlq", "list", "--config", d.cfg, "--sink", "audit", "--json")
	if r.err != nil {
		t.Fatalf("dlq list --json: %v", r.err)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("stdout = %q, want three JSON lines", r.stdout)
	}
	seen := map[string]bool{}
	var lastSeq uint64
	for i, line := range lines {
		if !strings.Contains(line, `"reason":"permanent failure"`) {
			t.Errorf("line %d = %s, want \"reason\":\"permanent failure\"", i+1, line)
		}
		var dl outbox.DeadLetter
		if err := json.Unmarshal([]byte(line), &dl); err != nil {
			t.Fatalf("line %d is not JSON: %v", i+1, err)
		}
		if dl.Sink != "audit" || dl.LastStatus != 400 || dl.Node != "dlq-node" || dl.Event.Type != "VOLUME_CREATE" || string(dl.Event.Data) != `{"name":"gv1"}` {
			t.Errorf("line %d = %s, want the dead letter with its event kept whole", i+1, line)
		}
		if dl.Seq <= lastSeq {
			t.Errorf("line %d: seq %d after %d, want oldest first", i+1, dl.Seq, lastSeq)
		}
		lastSeq = dl.Seq
		seen[dl.Event.ID] = true
	}
	for _, id := range []string{"js-1", "js-2", "js-3"} {
		if !seen[id] {
			t.Errorf("event %s not listed in %q", id, r.stdout)
		}
	}
}

func TestDLQListLimitShowsOldestFirst(t *testing.T) {
	d := startDLQNode(t)
	d.deadLetter(t, "lim-1", "lim-2", "lim-3")
	all := d.listed(t)
	if len(all) != 3 {
		t.Fatalf("listed %v, want 3 dead letters", eventIDs(all))
	}
	r := cli(t, "dlq", "list", "--config", d.cfg, "--sink", "audit", "--json", "--limit", "2")
	if r.err != nil {
		t.Fatal(r.err)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("--limit 2 printed %d lines: %q", len(lines), r.stdout)
	}
	for i, line := range lines {
		var dl outbox.DeadLetter
		if err := json.Unmarshal([]byte(line), &dl); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if dl.Seq != all[i].Seq || dl.Event.ID != all[i].Event.ID {
			t.Errorf("--limit 2 line %d = seq %d (%s), want seq %d (%s): the oldest first", i+1, dl.Seq, dl.Event.ID, all[i].Seq, all[i].Event.ID)
		}
	}
}

func TestDLQListOfSinkWithoutDeadLettersPrintsOnlyHeader(t *testing.T) {
	d := startDLQNode(t)
	r := cli(t, "dlq", "list", "--config", d.cfg, "--sink", "audit")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "SEQ") {
		t.Errorf("stdout = %q, want only the header", r.stdout)
	}
	if r := cli(t, "dlq", "list", "--config", d.cfg, "--sink", "audit", "--json"); r.err != nil || r.stdout != "" {
		t.Errorf("--json: err %v, stdout %q; want nothing", r.err, r.stdout)
	}
}

func TestDLQReplayAllRedeliversEveryDeadLetter(t *testing.T) {
	d := startDLQNode(t)
	ids := []string{"all-1", "all-2", "all-3"}
	d.deadLetter(t, ids...)
	d.accept()

	r := cli(t, "dlq", "replay", "--config", d.cfg, "--sink", "audit", "--all")
	if r.err != nil {
		t.Fatalf("dlq replay --all: %v", r.err)
	}
	if r.stdout != "replayed 3 dead letters to sink audit\n" {
		t.Errorf("stdout = %q, want \"replayed 3 ...\"", r.stdout)
	}
	for _, id := range ids {
		testutil.Eventually(t, cliWait, func() bool { return d.rcv.Seen(id) == 2 }, "%s delivered again after replay (seen %d)", id, d.rcv.Seen(id))
	}
	if left := d.listed(t); len(left) != 0 {
		t.Errorf("dead letters left after replay: %v", eventIDs(left))
	}
	testutil.Eventually(t, cliWait, func() bool { return d.node.Loop("audit").Stats().Delivered.Load() == 3 }, "3 replays acknowledged")

	// Replaying again finds nothing and is not an error.
	r = cli(t, "dlq", "replay", "--config", d.cfg, "--sink", "audit", "--all")
	if r.err != nil || r.stdout != "replayed 0 dead letters to sink audit\n" {
		t.Errorf("second replay: err %v, stdout %q; want 0 replayed", r.err, r.stdout)
	}
}

func TestDLQReplayByIDRedeliversOnlyThatEvent(t *testing.T) {
	d := startDLQNode(t)
	d.deadLetter(t, "one-1", "one-2")
	d.accept()

	r := cli(t, "dlq", "replay", "--config", d.cfg, "--sink", "audit", "--id", "one-2")
	if r.err != nil {
		t.Fatalf("dlq replay --id: %v", r.err)
	}
	if r.stdout != "replayed 1 dead letters to sink audit\n" {
		t.Errorf("stdout = %q, want \"replayed 1 ...\"", r.stdout)
	}
	testutil.Eventually(t, cliWait, func() bool { return d.rcv.Seen("one-2") == 2 }, "one-2 delivered again")
	if got := eventIDs(d.listed(t)); len(got) != 1 || got[0] != "one-1" {
		t.Errorf("dead letters after replaying one-2 = %v, want [one-1]", got)
	}
	if got := d.rcv.Seen("one-1"); got != 1 {
		t.Errorf("one-1 was sent %d times, want 1: it was not replayed", got)
	}
}

func TestDLQReplayRepeatedIDFlag(t *testing.T) {
	d := startDLQNode(t)
	d.deadLetter(t, "rep-1", "rep-2", "rep-3")
	d.accept()
	r := cli(t, "dlq", "replay", "--config", d.cfg, "--sink", "audit", "--id", "rep-1", "--id", "rep-3")
	if r.err != nil || r.stdout != "replayed 2 dead letters to sink audit\n" {
		t.Fatalf("err %v, stdout %q; want 2 replayed", r.err, r.stdout)
	}
	if got := eventIDs(d.listed(t)); len(got) != 1 || got[0] != "rep-2" {
		t.Errorf("dead letters left = %v, want [rep-2]", got)
	}
}

func TestDLQReplayUnknownIDFails(t *testing.T) {
	d := startDLQNode(t)
	d.deadLetter(t, "known-1")
	r := cli(t, "dlq", "replay", "--config", d.cfg, "--sink", "audit", "--id", "no-such-event")
	wantRuntimeError(t, r, "not dead letters of sink audit")
	if r.stdout != "replayed 0 dead letters to sink audit\n" {
		t.Errorf("stdout = %q, want \"replayed 0 ...\"", r.stdout)
	}
	if got := eventIDs(d.listed(t)); len(got) != 1 || got[0] != "known-1" {
		t.Errorf("dead letters = %v, want [known-1] untouched", got)
	}
}

func TestDLQReplayToStillFailingSinkDeadLettersAgain(t *testing.T) {
	d := startDLQNode(t)
	d.deadLetter(t, "again-1")
	// The sink still refuses: the replayed event must end up a dead letter
	// again, never vanish.
	r := cli(t, "dlq", "replay", "--config", d.cfg, "--sink", "audit", "--all")
	if r.err != nil {
		t.Fatal(r.err)
	}
	testutil.Eventually(t, cliWait, func() bool { return d.node.Loop("audit").Stats().DeadLettered.Load() == 2 }, "replayed event dead-lettered again")
	if got := d.rcv.Seen("again-1"); got != 2 {
		t.Errorf("sink got again-1 %d times, want 2", got)
	}
	if got := eventIDs(d.listed(t)); len(got) != 1 || got[0] != "again-1" {
		t.Errorf("dead letters after the failed replay = %v, want [again-1]", got)
	}
}

func TestDLQBadInvocationIsUsageError(t *testing.T) {
	path := writeFile(t, "outbox: {url: \"nats://127.0.0.1:1\"}\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"list without --sink", []string{"dlq", "list", "--config", path}, "--sink is required"},
		{"replay without --id or --all", []string{"dlq", "replay", "--config", path, "--sink", "audit"}, "either --id ID"},
		{"replay with both --id and --all", []string{"dlq", "replay", "--config", path, "--sink", "audit", "--all", "--id", "x"}, "either --id ID"},
		{"replay without --sink", []string{"dlq", "replay", "--config", path, "--all"}, "give --sink"},
		{"list with an undefined flag", []string{"dlq", "list", "--config", path, "--sink", "audit", "--since", "1h"}, "since"},
		{"list with a missing config", []string{"dlq", "list", "--config", filepath.Join(t.TempDir(), "x.yaml"), "--sink", "audit"}, "x.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantUsageError(t, cli(t, tt.args...), tt.want)
		})
	}
}

func TestDLQAgainstUnreachableOutboxFails(t *testing.T) {
	path := writeFile(t, "outbox: {url: \"nats://127.0.0.1:1\"}\n")
	for _, args := range [][]string{
		{"dlq", "list", "--config", path, "--sink", "audit"},
		{"dlq", "replay", "--config", path, "--sink", "audit", "--all"},
	} {
		t.Run(args[1], func(t *testing.T) {
			start := time.Now()
			r := cli(t, args...)
			wantRuntimeError(t, r, "unreachable", "nats://127.0.0.1:1")
			if !errors.Is(r.err, outbox.ErrUnreachable) {
				t.Errorf("err = %v, want it to wrap outbox.ErrUnreachable", r.err)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("took %s to report an unreachable outbox", took)
			}
		})
	}
}

func TestSinksDisableAndEnableAreRecordedInTheOutbox(t *testing.T) {
	d := startDLQNode(t)
	for _, verb := range []string{"disable", "enable"} {
		r := cli(t, "sinks", verb, "--config", d.cfg, "audit")
		if r.err != nil || !strings.Contains(r.stdout, "sink audit "+verb+"d") {
			t.Fatalf("sinks %s: %v, %q", verb, r.err, r.stdout)
		}
		want := verb == "disable"
		testutil.Eventually(t, cliWait, func() bool { return d.node.Loop("audit").Stats().Disabled.Load() == want }, "sink %sd on the node", verb)
	}
	var ue usageError
	if r := cli(t, "sinks", "enable", "--config", d.cfg, "nosuch"); !errors.As(r.err, &ue) {
		t.Errorf("enable of an unknown sink: err = %v, want usage error", r.err)
	}
}

func TestEventsAttemptsShowsEveryAttemptOfAnEvent(t *testing.T) {
	d := startDLQNode(t)
	d.deadLetter(t, "hist-1")
	// Attempts reach the event log in batches, a fraction of a second on.
	var r cliResult
	testutil.Eventually(t, cliWait, func() bool {
		r = cli(t, "events", "attempts", "--config", d.cfg, "hist-1")
		return r.err == nil && strings.Contains(r.stdout, "dead_lettered")
	}, "the dead-lettered attempt in the event log")
	if !strings.Contains(r.stdout, "audit") || !strings.Contains(r.stdout, "400") || !strings.Contains(r.stdout, "dlq-node") {
		t.Errorf("attempts of hist-1:\n%s\nwant the sink, the status and the node", r.stdout)
	}
	r = cli(t, "events", "attempts", "--config", d.cfg, "--json", "hist-1")
	if r.err != nil || strings.Count(r.stdout, "\n") != 1 || !strings.Contains(r.stdout, `"attempt":1`) {
		t.Errorf("--json: %v\n%s", r.err, r.stdout)
	}
	wantRuntimeError(t, cli(t, "events", "attempts", "--config", d.cfg, "never-emitted"), "no events found matching the given criteria")
}

func TestStatusShowsNodesUpOrDownAndEachSinksBacklog(t *testing.T) {
	d := startDLQNode(t)
	d.deadLetter(t, "status-1")
	// A node that stopped reporting a minute ago, as after a crash.
	nc, err := nats.Connect(d.node.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	nodes, err := outbox.OpenNodes(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes.Beat(context.Background(), outbox.NodeInfo{Node: "ghost", Heartbeat: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	var out string
	// The sink's last error reaches the table with the node's next heartbeat.
	testutil.Eventually(t, 3*status.HeartbeatInterval, func() bool {
		r := cli(t, "status", "--config", d.cfg)
		out = r.stdout
		return r.err == nil && strings.Contains(out, "status 400")
	}, "status with the sink's last error")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^dlq-node\s+UP\s+running`),
		regexp.MustCompile(`(?m)^ghost\s+DOWN\s+not reporting`),
		regexp.MustCompile(`(?m)^audit\s+enabled\s+0\s+0\s+1\s`),
	} {
		if !want.MatchString(out) {
			t.Errorf("status lacks %s:\n%s", want, out)
		}
	}
	r := cli(t, "status", "--config", d.cfg, "--json")
	if r.err != nil || !strings.Contains(r.stdout, `"dead_letters":1`) || !strings.Contains(r.stdout, `"up":false`) {
		t.Errorf("status --json: %v\n%s", r.err, r.stdout)
	}
}

// Every command answers --help with what it does and its flags, and leaves
// take --config: walked over the tree itself, so a command added later is
// covered too.
func TestEveryCommandHasHelp(t *testing.T) {
	var walk func(path []string, c *cobra.Command)
	count := 0
	walk = func(path []string, c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			p := append(slices.Clone(path), sub.Name())
			r := cli(t, append(p, "--help")...)
			count++
			if r.err != nil || !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, sub.Short) {
				t.Errorf("worker %s --help: err %v, stdout %q", strings.Join(p, " "), r.err, r.stdout)
			}
			if !sub.HasSubCommands() && sub.Name() != "version" && !strings.Contains(r.stdout, "--config") {
				t.Errorf("worker %s --help does not list --config:\n%s", strings.Join(p, " "), r.stdout)
			}
			walk(p, sub)
		}
	}
	walk(nil, commandTree(io.Discard, io.Discard))
	if count < 20 {
		t.Errorf("walked %d commands, want every one (at least 20)", count)
	}
}

func TestCompletionScripts(t *testing.T) {
	for shell, marker := range map[string]string{"bash": "complete -o default -F __start_worker worker", "zsh": "#compdef worker", "fish": "complete -c worker"} {
		r := cli(t, "completion", shell)
		if r.err != nil || !strings.Contains(r.stdout, marker) {
			t.Errorf("worker completion %s: err %v, script lacks %q", shell, r.err, marker)
		}
	}
	// The script asks the worker itself for completions: subcommands and
	// flags come from the tree.
	r := cli(t, "__complete", "sinks", "")
	for _, want := range []string{"add", "del", "list", "test", "enable", "disable"} {
		if !regexp.MustCompile(`(?m)^` + want + `\t`).MatchString(r.stdout) {
			t.Errorf("completing worker sinks: lacks %s in\n%s", want, r.stdout)
		}
	}
	r = cli(t, "__complete", "sinks", "add", "--")
	if !strings.Contains(r.stdout, "--bearer-token") || !strings.Contains(r.stdout, "--wait") {
		t.Errorf("completing worker sinks add --: %s", r.stdout)
	}
}

// Flags written with one dash, as the earlier parser (Go's flag package)
// accepted, still work.
func TestGoStyleSingleDashFlags(t *testing.T) {
	cfg := writeFile(t, "node_id: n1\n")
	r := cli(t, "check", "-config", cfg)
	if r.err != nil || !strings.Contains(r.stdout, "ok (0 sinks)") {
		t.Errorf("worker check -config FILE: %v %q", r.err, r.stdout)
	}
}

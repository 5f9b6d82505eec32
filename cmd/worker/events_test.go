package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/eventlog"
	"github.com/courierhq/courier/internal/testutil"
)

// logNode is a worker with two sinks, one taking every event and one only
// VM events, and an admin API with an admin token and two account tokens.
type logNode struct {
	node  *testutil.Node
	cfg   string
	admin string // base URL of the admin endpoint
}

const (
	adminToken = "admin-token-0123456789"
	acmeToken  = "acme-token-0123456789ab"
	otherToken = "globex-token-0123456789"
)

func startLogNode(t *testing.T) *logNode {
	t.Helper()
	rcv := testutil.NewReceiver(t)
	sinks := "sinks:\n" +
		"  - {name: all, type: webhook, url: " + rcv.URL() + "}\n" +
		"  - {name: vms, type: webhook, url: " + rcv.URL() + ", events: [\"VM.*\"]}\n"
	n := testutil.StartNode(t, "node_id: log-node\nadmin: {token: "+adminToken+", account_tokens: {acme: "+acmeToken+", globex: "+otherToken+"}}\n"+sinks, nil)
	cfg := writeFile(t, "node_id: cli-node\noutbox: {url: \""+n.URL()+"\"}\n"+sinks)
	srv := httptest.NewServer(n.AdminHandler())
	t.Cleanup(srv.Close)
	return &logNode{node: n, cfg: cfg, admin: srv.URL}
}

// emitFamily emits a CloudStack volume job in three states and a VM error
// of another account, and waits until the log has them all delivered.
func (d *logNode) emitFamily(t *testing.T) {
	t.Helper()
	p := d.node.Publisher(t)
	for _, e := range []event.Envelope{
		{ID: "job-1", Type: "VOLUME.CREATE", State: event.StateScheduled, Account: "acme", Description: "Scheduled async job for creating volume: vol1", ResourceID: "3", ResourceType: "Volume"},
		{ID: "job-2", Type: "VOLUME.CREATE", State: event.StateStarted, StartID: "job-1", Account: "acme", Description: "Starting job for creating volume. Volume Id: 3"},
		{ID: "job-3", Type: "VOLUME.CREATE", State: event.StateCompleted, StartID: "job-1", Account: "acme", Description: "Successfully completed creating volume. Volume Id: 3"},
		{ID: "vm-1", Type: "VM.START", Level: event.LevelError, State: event.StateCompleted, Account: "globex", Description: "Error while starting VM", Data: json.RawMessage(`{"reason":"InsufficientCapacity"}`)},
	} {
		if _, err := p.Emit(context.Background(), e); err != nil {
			t.Fatalf("emit %s: %v", e.ID, err)
		}
	}
	testutil.Eventually(t, cliWait, func() bool {
		r := cli(t, "events", "list", "--config", d.cfg, "--json")
		return r.err == nil && strings.Count(r.stdout, `"all":{"state":"delivered"`) == 4
	}, "four events logged and delivered to sink all")
}

func TestEventsListShowsTheLogWithDeliveries(t *testing.T) {
	d := startLogNode(t)
	d.emitFamily(t)

	r := cli(t, "events", "list", "--config", d.cfg)
	if r.err != nil {
		t.Fatal(r.err)
	}
	// A table, newest first.
	if !strings.HasPrefix(r.stdout, "TIME") || strings.Index(r.stdout, "vm-1") > strings.Index(r.stdout, "job-1") {
		t.Errorf("list:\n%s", r.stdout)
	}
	for _, c := range []struct {
		args []string
		want []string
		not  []string
	}{
		{[]string{"--type", "VOLUME.*"}, []string{"job-1", "job-2", "job-3"}, []string{"vm-1"}},
		{[]string{"--start-id", "job-1"}, []string{"job-1", "job-2", "job-3"}, []string{"vm-1"}},
		{[]string{"--keyword", "insufficientcapacity"}, []string{"vm-1"}, []string{"job-"}},
		{[]string{"--level", "error", "--account", "globex"}, []string{"vm-1"}, []string{"job-"}},
		{[]string{"--state", "Completed", "--since", "1h"}, []string{"job-3", "vm-1"}, []string{"job-1", "job-2"}},
		{[]string{"--limit", "1", "--page", "2"}, []string{"job-3"}, []string{"vm-1", "job-2"}},
		{[]string{"--until", "1h"}, []string{"no events"}, []string{"job-"}},
	} {
		r := cli(t, append([]string{"events", "list", "--config", d.cfg}, c.args...)...)
		if r.err != nil {
			t.Errorf("list %v: %v", c.args, r.err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("list %v lacks %s:\n%s", c.args, w, r.stdout)
			}
		}
		for _, n := range c.not {
			if strings.Contains(r.stdout, n) {
				t.Errorf("list %v shows %s:\n%s", c.args, n, r.stdout)
			}
		}
	}

	// Per sink: the VM sink filtered the volume events out.
	r = cli(t, "events", "show", "--config", d.cfg, "--json", "job-3")
	var shown struct {
		Event    eventlog.Event     `json:"event"`
		Attempts []eventlog.Attempt `json:"attempts"`
	}
	if r.err != nil || json.Unmarshal([]byte(r.stdout), &shown) != nil {
		t.Fatalf("show --json: %v\n%s", r.err, r.stdout)
	}
	if shown.Event.Deliveries["all"].State != "delivered" || shown.Event.Deliveries["vms"].State != "filtered" ||
		len(shown.Attempts) != 1 || shown.Attempts[0].Node != "log-node" || shown.Event.StartID != "job-1" {
		t.Errorf("show job-3: %+v", shown)
	}
	r = cli(t, "events", "show", "--config", d.cfg, "vm-1")
	for _, w := range []string{"Error while starting VM", "globex", "all:delivered", "vms:delivered", "SINK"} {
		if r.err != nil || !strings.Contains(r.stdout, w) {
			t.Errorf("show vm-1 lacks %q: %v\n%s", w, r.err, r.stdout)
		}
	}
}

func TestEventsArchiveAndDelete(t *testing.T) {
	d := startLogNode(t)
	d.emitFamily(t)
	r := cli(t, "events", "archive", "--config", d.cfg, "--type", "VOLUME.*", "--end-date", time.Now().UTC().Format("2006-01-02"))
	if r.err != nil || strings.TrimSpace(r.stdout) != "3 events archived" {
		t.Fatalf("archive: %v %q", r.err, r.stdout)
	}
	if r := cli(t, "events", "list", "--config", d.cfg); r.err != nil || strings.Contains(r.stdout, "job-") || !strings.Contains(r.stdout, "vm-1") {
		t.Errorf("list after archive: %v\n%s", r.err, r.stdout)
	}
	if r := cli(t, "events", "list", "--config", d.cfg, "--archived"); r.err != nil || strings.Count(r.stdout, "job-") != 3 {
		t.Errorf("list --archived: %v\n%s", r.err, r.stdout)
	}
	if r := cli(t, "events", "delete", "--config", d.cfg, "--id", "job-1", "job-2"); r.err != nil || strings.TrimSpace(r.stdout) != "2 events deleted" {
		t.Errorf("delete: %v %q", r.err, r.stdout)
	}
	wantRuntimeError(t, cli(t, "events", "delete", "--config", d.cfg, "--id", "job-1"), "no events found matching the given criteria")
	wantRuntimeError(t, cli(t, "events", "show", "--config", d.cfg, "job-1"), "no events found")
}

func TestEventsBadFiltersAreUsageErrors(t *testing.T) {
	d := startLogNode(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "--level", "DEBUG"}, "level"},
		{[]string{"list", "--state", "Done"}, "state"},
		{[]string{"list", "--start-date", "yesterday"}, "startdate"},
		{[]string{"list", "--since", "2h", "--start-date", "2026-01-01"}, "not both"},
		{[]string{"list", "--limit", "0"}, "pagesize"},
		{[]string{"list", "--start-date", "2026-11-02", "--end-date", "2026-11-01"}, "before the start date"},
		{[]string{"archive"}, "give ids, a type or an end date"},
		{[]string{"delete", "--start-date", "2026-11-01"}, "a start date needs an end date"},
		{[]string{"archive", "--id", "x", "--type", "A"}, "not both"},
		{[]string{"show"}, "usage"},
		{[]string{"frobnicate"}, "usage"},
	} {
		wantUsageError(t, cli(t, append(append([]string{"events"}, c.args...), "--config", d.cfg)...), c.want)
	}
}

func TestEventLogAdminAPIAndAccountTokens(t *testing.T) {
	d := startLogNode(t)
	d.emitFamily(t)
	get := func(token, path string) (int, eventlog.Response) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, d.admin+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		return do(t, req)
	}
	post := func(token, path string, form url.Values) (int, eventlog.Response) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, d.admin+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+token)
		return do(t, req)
	}
	if code, resp := get(adminToken, "/v1/events?type=VOLUME.*&startdate=2h&pagesize=2"); code != 200 || len(resp.Events) != 2 {
		t.Errorf("admin list: %d %+v", code, resp)
	}
	if code, resp := get(adminToken, "/v1/events?level=LOUD"); code != 400 || !strings.Contains(resp.Error, "level") {
		t.Errorf("bad level: %d %+v", code, resp)
	}
	if code, resp := get(adminToken, "/v1/events?colour=red"); code != 400 || !strings.Contains(resp.Error, "colour") {
		t.Errorf("unknown parameter: %d %+v", code, resp)
	}
	// An account sees only its own events; another's is 404, not 403.
	if code, resp := get(acmeToken, "/v1/events"); code != 200 || len(resp.Events) != 3 {
		t.Errorf("acme list: %d %d events", code, len(resp.Events))
	}
	if code, resp := get(acmeToken, "/v1/events?account=globex"); code != 200 || len(resp.Events) != 0 {
		t.Errorf("acme asks for globex's events: %d %d events", code, len(resp.Events))
	}
	if code, _ := get(acmeToken, "/v1/events/vm-1"); code != 404 {
		t.Errorf("acme reads globex's vm-1: %d, want 404", code)
	}
	if code, resp := get(otherToken, "/v1/events/vm-1"); code != 200 || resp.Event == nil || resp.Event.ID != "vm-1" || len(resp.Attempts) == 0 {
		t.Errorf("globex reads vm-1: %d %+v", code, resp)
	}
	if code, _ := post(acmeToken, "/v1/events/delete", url.Values{"id": {"vm-1"}}); code != 404 {
		t.Errorf("acme deletes globex's vm-1: %d, want 404", code)
	}
	if code, resp := post(acmeToken, "/v1/events/archive", url.Values{"type": {"VOLUME.*"}}); code != 200 || resp.Count != 3 {
		t.Errorf("acme archives its volume events: %d %+v", code, resp)
	}
	if code, resp := post(adminToken, "/v1/events/delete", url.Values{"startdate": {"2026-01-01"}}); code != 400 || !strings.Contains(resp.Error, "end date") {
		t.Errorf("delete with a start date alone: %d %+v", code, resp)
	}
	// Account tokens reach no sinks and no settings; no token reaches nothing.
	for _, path := range []string{"/v1/sinks", "/v1/config"} {
		if code, _ := get(acmeToken, path); code != http.StatusUnauthorized {
			t.Errorf("acme GET %s: %d, want 401", path, code)
		}
	}
	if code, _ := get("", "/v1/events"); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}
}

func do(t *testing.T, req *http.Request) (int, eventlog.Response) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var resp eventlog.Response
	_ = json.Unmarshal(body, &resp)
	return res.StatusCode, resp
}

// TestEventPurgeDelayIsASettingAppliedLive emits an event dated 20 days
// back and one of now; with event-purge-interval set to 1s, the default
// delay of 15 days purges the old one only.
func TestEventPurgeDelayIsASettingAppliedLive(t *testing.T) {
	d := startLogNode(t)
	p := d.node.Publisher(t)
	for _, e := range []event.Envelope{
		{ID: "old-1", Type: "USER.LOGIN", Time: time.Now().Add(-20 * 24 * time.Hour)},
		{ID: "new-1", Type: "USER.LOGIN"},
	} {
		if _, err := p.Emit(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, cliWait, func() bool {
		r := cli(t, "events", "list", "--config", d.cfg, "--type", "USER.*")
		return r.err == nil && strings.Contains(r.stdout, "old-1") && strings.Contains(r.stdout, "new-1")
	}, "both events logged")
	if r := cli(t, "config", "get", "--config", d.cfg, "event-purge-delay"); r.err != nil || !strings.Contains(r.stdout, "15") {
		t.Fatalf("config get event-purge-delay: %v %q", r.err, r.stdout)
	}
	wantUsageError(t, cli(t, "config", "set", "--config", d.cfg, "event-purge-delay", "forever"), "days")
	if r := cli(t, "config", "set", "--config", d.cfg, "event-purge-interval", "1s"); r.err != nil {
		t.Fatal(r.err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		r := cli(t, "events", "list", "--config", d.cfg, "--type", "USER.*")
		return r.err == nil && !strings.Contains(r.stdout, "old-1")
	}, "the 20-day-old event purged")
	if r := cli(t, "events", "show", "--config", d.cfg, "new-1"); r.err != nil {
		t.Errorf("the new event was purged too: %v", r.err)
	}
}

// TestEventLogOnPostgreSQL runs a worker whose log is the real
// PostgreSQL: events and attempts arrive there, and the queries answer
// from it.
func TestEventLogOnPostgreSQL(t *testing.T) {
	pg := testutil.PostgresSchema(t)
	rcv := testutil.NewReceiver(t)
	sinks := "sinks:\n  - {name: all, type: webhook, url: " + rcv.URL() + "}\n"
	n := testutil.StartNode(t, "node_id: pg-node\nevent_log: {url: \"${PG}\"}\n"+sinks, map[string]string{"PG": pg})
	cfg := writeFile(t, "outbox: {url: \""+n.URL()+"\"}\n"+sinks)
	p := n.Publisher(t)
	if _, err := p.Emit(context.Background(), event.Envelope{ID: "pg-1", Type: "VM.CREATE", Account: "acme", Description: "Successfully created VM"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, cliWait, func() bool {
		r := cli(t, "events", "list", "--config", cfg, "--json", "--account", "acme")
		return r.err == nil && strings.Contains(r.stdout, `"all":{"state":"delivered","attempts":1}`)
	}, "pg-1 logged in PostgreSQL with its delivery")
	// Read it back from PostgreSQL itself, not through the worker.
	s, err := eventlog.Open(context.Background(), pg, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, attempts, err := s.Get(context.Background(), "pg-1", "")
	if err != nil || e.Description != "Successfully created VM" || len(attempts) != 1 || attempts[0].Node != "pg-node" {
		t.Fatalf("pg-1 in PostgreSQL: %+v %+v %v", e, attempts, err)
	}
}

// TestEventLogOff: a pure pipeline keeps no log and no log consumers, and
// still delivers; the event commands say the log is off.
func TestEventLogOff(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	sinks := "sinks:\n  - {name: all, type: webhook, url: " + rcv.URL() + "}\n"
	n := testutil.StartNode(t, "event_log: {enabled: false}\n"+sinks, nil)
	cfg := writeFile(t, "outbox: {url: \""+n.URL()+"\"}\n"+sinks)
	if _, err := n.Publisher(t).Emit(context.Background(), event.Envelope{ID: "off-1", Type: "VM.CREATE"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, cliWait, func() bool { return rcv.Seen("off-1") == 1 }, "delivered without a log")
	wantRuntimeError(t, cli(t, "events", "list", "--config", cfg), "event_log.enabled")
	if _, err := os.Stat(filepath.Join(n.Config.DataDir, eventlog.FileName)); !os.IsNotExist(err) {
		t.Errorf("an event log file exists with the log off: %v", err)
	}
	r := cli(t, "status", "--config", cfg)
	if r.err != nil || !regexp.MustCompile(`(?m)\soff$`).MatchString(r.stdout) {
		t.Errorf("status does not say the log is off: %v\n%s", r.err, r.stdout)
	}
}

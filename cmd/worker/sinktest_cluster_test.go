package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/status"
	"github.com/courierhq/courier/worker"
)

// worker sinks test asks every node, as gluster-eventsapi webhook-test
// does, since a destination may take one node's requests and not
// another's: here each node sends the bearer token of its own environment,
// and the webhook accepts only n1's. A row per node: n1 OK, n2 FAILED with
// the 401, n3 (stopped) DOWN and not asked.
func TestSinksTestAsksEveryNode(t *testing.T) {
	if testing.Short() {
		t.Skip("three-process cluster test skipped with -short")
	}
	rcv := testutil.NewReceiver(t)
	rcv.Answer(func(d testutil.Delivery, _ int) (int, http.Header) {
		if d.Header.Get("Authorization") != "Bearer n1-token" && strings.Contains(string(d.Body), "COURIER_TEST") {
			return http.StatusUnauthorized, nil
		}
		return http.StatusOK, nil
	})
	nodes := writeClusterConfigs(t, rcv.URL())
	for _, n := range nodes {
		f, err := os.OpenFile(n.cfg, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteString("  - name: checked\n    type: webhook\n    url: " + rcv.URL() + "\n    timeout: 2s\n    bearer_token: ${HOOK_TOKEN}\n" +
			"secrets: {allow_env: [PAGER_TOKEN]}\n")
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		env := []string{"HOOK_TOKEN=" + n.id + "-token"}
		if n.id != "n3" {
			env = append(env, "PAGER_TOKEN=p") // n3 lacks it
		}
		n.proc = startWorkerProcEnv(t, n.cfg, env...)
	}
	for _, n := range nodes {
		testutil.Eventually(t, time.Minute, func() bool { return nodeRuns(t, nodes[0].url, n.id, "checked") }, "%s runs the sink", n.id)
	}

	// sinks add and del wait for every node up and print a row per node,
	// as gluster-eventsapi webhook-add does: a definition that needs what
	// one node lacks fails there, and says so.
	t.Setenv("HOOK_TOKEN", "n1-token") // the operator's shell on n1 has n1's environment
	t.Setenv("PAGER_TOKEN", "p")
	def := filepath.Join(t.TempDir(), "pager.yaml")
	if err := os.WriteFile(def, []byte("name: pager\ntype: webhook\nurl: "+rcv.URL()+"\nbearer_token: ${PAGER_TOKEN}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := cli(t, "sinks", "add", "--config", nodes[0].cfg, "-f", def)
	t.Logf("worker sinks add -f pager.yaml:\n%s", r.stdout)
	wantRuntimeError(t, r, "sink pager is not running on 1 of the nodes up")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^NODE\s+NODE STATUS\s+SINK STATUS$`),
		regexp.MustCompile(`(?m)^n1\s+UP\s+RUNNING$`),
		regexp.MustCompile(`(?m)^n2\s+UP\s+RUNNING$`),
		regexp.MustCompile(`(?m)^n3\s+UP\s+FAILED: .*PAGER_TOKEN`),
	} {
		if !want.MatchString(r.stdout) {
			t.Errorf("sinks add lacks %s:\n%s", want, r.stdout)
		}
	}
	r = cli(t, "sinks", "del", "--config", nodes[0].cfg, "pager", "--json")
	if r.err != nil {
		t.Fatalf("sinks del pager: %v\n%s", r.err, r.stdout)
	}
	var applied []NodeApplied
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var row NodeApplied
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("sinks del --json line %q: %v", line, err)
		}
		applied = append(applied, row)
	}
	if len(applied) != 3 {
		t.Fatalf("sinks del --json: %+v, want a row per node", applied)
	}
	for _, row := range applied {
		if row.NodeStatus != "UP" || row.SinkStatus != "STOPPED" {
			t.Errorf("sinks del --json: %+v, want every node up and the sink stopped", row)
		}
	}
	// n3 stops cleanly: its goodbye heartbeat marks it down at once.
	if err := nodes[2].proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = nodes[2].proc.cmd.Wait()
	// Losing a member may leave JetStream electing leaders for a while on
	// a busy machine; the test is of the command, not of the election.
	testutil.Eventually(t, time.Minute, func() bool { return clusterSees(nodes[0].url, "n3", false) }, "n1 reads n3 as down")

	// A node down is listed, not waited for: it applies the change when
	// it starts.
	began := time.Now()
	r = cliWithin(t, time.Minute, "sinks", "add", "--config", nodes[0].cfg, "late", rcv.URL()+"/late", "--wait", "50s")
	t.Logf("sinks add late, n3 down: %s", time.Since(began))
	if r.err != nil || !regexp.MustCompile(`(?m)^n3\s+DOWN\s+-$`).MatchString(r.stdout) || !regexp.MustCompile(`(?m)^n2\s+UP\s+RUNNING$`).MatchString(r.stdout) {
		t.Errorf("sinks add with n3 down: %v\n%s", r.err, r.stdout)
	}
	// config set waits for the nodes up the same way, and lists n3 down.
	r = cliWithin(t, time.Minute, "config", "set", "--config", nodes[0].cfg, "retry-max-attempts", "7", "--wait", "50s")
	t.Logf("worker config set, n3 down:\n%s", r.stdout)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^NODE\s+NODE STATUS\s+SETTING STATUS$`),
		regexp.MustCompile(`(?m)^n1\s+UP\s+APPLIED \(retry-max-attempts 7\)$`),
		regexp.MustCompile(`(?m)^n2\s+UP\s+APPLIED \(retry-max-attempts 7\)$`),
		regexp.MustCompile(`(?m)^n3\s+DOWN\s+-$`),
	} {
		if r.err != nil || !want.MatchString(r.stdout) {
			t.Errorf("config set with n3 down: %v; lacks %s", r.err, want)
		}
	}

	r = cli(t, "sinks", "test", "--config", nodes[0].cfg, "checked")
	t.Logf("worker sinks test checked:\n%s", r.stdout)
	wantRuntimeError(t, r, "1 of the nodes asked")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^NODE\s+SINK\s+RESULT$`),
		regexp.MustCompile(`(?m)^n1\s+checked\s+OK \(`),
		regexp.MustCompile(`(?m)^n2\s+checked\s+FAILED \(permanent, .*401`),
		regexp.MustCompile(`(?m)^n3\s+checked\s+DOWN \(not asked\)$`),
	} {
		if !want.MatchString(r.stdout) {
			t.Errorf("sinks test lacks %s:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "n1-token") || strings.Contains(r.stdout, "n2-token") {
		t.Errorf("sinks test printed a token:\n%s", r.stdout)
	}

	r = cli(t, "sinks", "test", "--config", nodes[0].cfg, "checked", "--json")
	var rows []worker.SinkTestReply
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var row worker.SinkTestReply
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("sinks test --json line %q: %v", line, err)
		}
		rows = append(rows, row)
	}
	if len(rows) != 3 || !rows[0].OK || rows[1].OK || rows[1].Kind != "permanent" || !rows[2].Down {
		t.Errorf("sinks test --json: %+v, want n1 ok, n2 failed permanent, n3 down", rows)
	}
}

// clusterSees says whether the cluster, read through url, has node up (or
// down), which takes a JetStream that answers.
func clusterSees(url, node string, up bool) bool {
	nc, err := nats.Connect(url)
	if err != nil {
		return false
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	report, err := status.Read(ctx, js, nil)
	if err != nil {
		return false
	}
	for _, n := range report.Nodes {
		if n.Node == node {
			return n.Up == up
		}
	}
	return false
}

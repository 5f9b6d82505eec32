package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
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
		_, err = f.WriteString("  - name: checked\n    type: webhook\n    url: " + rcv.URL() + "\n    timeout: 2s\n    bearer_token: ${HOOK_TOKEN}\n")
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		n.proc = startWorkerProcEnv(t, n.cfg, "HOOK_TOKEN="+n.id+"-token")
	}
	for _, n := range nodes {
		testutil.Eventually(t, time.Minute, func() bool { return nodeRuns(t, nodes[0].url, n.id, "checked") }, "%s runs the sink", n.id)
	}
	// n3 stops cleanly: its goodbye heartbeat marks it down at once.
	if err := nodes[2].proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = nodes[2].proc.cmd.Wait()
	// Losing a member may leave JetStream electing leaders for a while on
	// a busy machine; the test is of the command, not of the election.
	testutil.Eventually(t, time.Minute, func() bool { return clusterSees(nodes[0].url, "n3", false) }, "n1 reads n3 as down")

	t.Setenv("HOOK_TOKEN", "n1-token") // the operator's shell on n1 has n1's environment
	r := cli(t, "sinks", "test", "--config", nodes[0].cfg, "checked")
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

package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
)

// TestNoSecretInAnyOutput runs a worker with a secret in every place that
// takes one (admin and account tokens, ingest token, outbox passwords, a
// webhook's URL password, query token, bearer token, signing secret and
// header), makes every delivery fail, and greps every output: the
// worker's logs (debug) and exported spans, every command's output, the
// admin API, the event log, dead letters, /metrics and ingest's answers.
func TestNoSecretInAnyOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("process test skipped with -short")
	}
	secrets := map[string]string{
		"T_ADMIN": "s3cr3t-admin-token-0001", "T_ACCOUNT": "s3cr3t-account-token-02", "T_INGEST": "s3cr3t-ingest-token-003",
		"T_NATS": "s3cr3t-nats-password-04", "T_PRODUCER": "s3cr3t-producer-pass-05", "T_URLPASS": "s3cr3t-url-password-06",
		"T_QUERY": "s3cr3t-query-token-007", "T_BEARER": "s3cr3t-bearer-token-08", "T_HEADER": "s3cr3t-header-value-09",
	}
	signing := base64.StdEncoding.EncodeToString([]byte("s3cr3t-signing-key-10xx"))
	secrets["T_SIGNING"] = "whsec_" + signing
	var env []string
	for k, v := range secrets {
		env = append(env, k+"="+v)
		t.Setenv(k, v) // the CLI reads the same file
	}
	leaks := []string{"s3cr3t", signing}

	rcv := testutil.NewReceiver(t)
	rcv.Answer(func(testutil.Delivery, int) (int, http.Header) { return http.StatusServiceUnavailable, nil })
	dir := t.TempDir()
	port, adminPort, ingestPort := freePort(t), freePort(t), freePort(t)
	rcvURL := strings.Replace(rcv.URL(), "http://", "http://hookuser:${T_URLPASS}@", 1) + "?token=${T_QUERY}"
	cfg := filepath.Join(dir, "courier.yaml")
	content := fmt.Sprintf(`node_id: secret-node
data_dir: %s
log: {level: debug, format: json}
admin:
  listen: 127.0.0.1:%d
  token: ${T_ADMIN}
  account_tokens: {acme: "${T_ACCOUNT}"}
outbox:
  listen: 127.0.0.1:%d
  auth:
    user: courier
    password: ${T_NATS}
    producers: [{user: app, password: "${T_PRODUCER}"}]
ingest:
  listen: 127.0.0.1:%d
  tokens: [{token: "${T_INGEST}", account: acme}]
webhook_allow: [127.0.0.1/32]
sinks:
  - name: hook
    type: webhook
    url: %s
    bearer_token: ${T_BEARER}
    secret: ${T_SIGNING}
    headers: {X-Api-Key: "${T_HEADER}"}
    retry: {initial: 50ms, max_interval: 100ms, max_attempts: 2}
`, filepath.Join(dir, "data"), adminPort, port, ingestPort, rcvURL)
	if err := os.WriteFile(cfg, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	proc := startWorkerProcEnv(t, cfg, append(env, "OTEL_TRACES_EXPORTER=console", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none")...)

	var outputs []string // "where: text"
	record := func(where, text string) { outputs = append(outputs, where+": "+text) }
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	get := func(path, token string) string {
		req, _ := http.NewRequest(http.MethodGet, admin+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "error: " + err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.Status + " " + string(b)
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return strings.HasPrefix(get("/readyz", ""), "200") }, "worker ready")

	// Events in over HTTP and from the Go library with the producer's
	// credentials.
	ingest := fmt.Sprintf("http://127.0.0.1:%d/v1/events", ingestPort)
	for _, body := range []string{`{"id":"http-1","type":"VOLUME_CREATE"}`, `{"type":"bad type"}`} {
		req, _ := http.NewRequest(http.MethodPost, ingest, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+secrets["T_INGEST"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		record("ingest answer", string(b))
	}
	pub, err := outbox.Dial(context.Background(), fmt.Sprintf("nats://127.0.0.1:%d", port), 5*time.Second,
		outbox.WithCredentials(outbox.Credentials{User: "app", Password: secrets["T_PRODUCER"]}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Emit(context.Background(), event.Envelope{ID: "lib-1", Type: "VOLUME_CREATE", Account: "acme"}); err != nil {
		t.Fatal(err)
	}
	pub.Close()
	// Both dead-lettered after two attempts each.
	testutil.Eventually(t, 30*time.Second, func() bool {
		r := cli(t, "dlq", "list", "--config", cfg, "--sink", "hook", "--json")
		return r.err == nil && strings.Count(r.stdout, `"seq"`) == 2
	}, "both events dead-lettered")
	testutil.Eventually(t, 30*time.Second, func() bool {
		r := cli(t, "events", "attempts", "--config", cfg, "lib-1", "--json")
		return r.err == nil && strings.Count(r.stdout, `"attempt"`) >= 2
	}, "attempts in the event log")

	for _, args := range [][]string{
		{"check", "--config", cfg}, {"status", "--config", cfg}, {"sinks", "list", "--config", cfg},
		{"sinks", "test", "--config", cfg, "hook"}, {"config", "get", "--config", cfg},
		{"events", "list", "--config", cfg}, {"events", "show", "--config", cfg, "http-1", "--json"},
		{"events", "attempts", "--config", cfg, "lib-1", "--json"}, {"dlq", "list", "--config", cfg, "--sink", "hook", "--json"},
	} {
		r := cli(t, args...)
		errText := ""
		if r.err != nil {
			errText = r.err.Error()
		}
		record("worker "+strings.Join(args[:2], " "), r.stdout+r.stderr+errText)
	}
	record("GET /v1/sinks", get("/v1/sinks", secrets["T_ADMIN"]))
	record("GET /v1/config", get("/v1/config", secrets["T_ADMIN"]))
	record("GET /v1/events (account)", get("/v1/events", secrets["T_ACCOUNT"]))
	record("GET /v1/events/lib-1", get("/v1/events/lib-1", secrets["T_ADMIN"]))
	record("GET /v1/sinks, wrong token", get("/v1/sinks", "wrong-token-0123456789"))
	record("/metrics", get("/metrics", ""))

	if err := proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = proc.cmd.Wait()
	record("worker stderr (logs)", proc.stderr.String())
	record("worker stdout (spans)", proc.stdout.String())
	if !strings.Contains(proc.stdout.String(), "SpanContext") {
		t.Error("no spans were exported to stdout: the traces were not checked")
	}
	if !strings.Contains(proc.stderr.String(), `"level":"DEBUG"`) {
		t.Error("no debug log lines: the logs were not checked at their most verbose")
	}
	for _, out := range outputs {
		where, _, _ := strings.Cut(out, ": ")
		for _, leak := range leaks {
			if i := strings.Index(out, leak); i >= 0 {
				t.Errorf("%s shows a secret: ...%s...", where, out[max(0, i-80):min(len(out), i+40)])
			}
		}
	}
}

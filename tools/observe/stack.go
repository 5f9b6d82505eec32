// Package observe runs a Courier worker beside a real Jaeger and a real
// Prometheus, both built from the module proxy, and reads back what they
// saw: traces through Jaeger's query API, the dashboard's panels and the
// exemplars through Prometheus's. make observe and its test use it. It is
// a module of its own, and Jaeger and Prometheus are modules of their own
// below it, so none of their dependencies enter the product's go.mod.
package observe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Binaries are the programs the stack runs.
type Binaries struct {
	Jaeger, Prometheus, Promtool, Worker, Emit string
}

// Build builds Jaeger, Prometheus, promtool, the worker and emit into dir
// from the repository at repo.
func Build(ctx context.Context, repo, dir string) (Binaries, error) {
	for _, b := range []struct {
		module string
		pkgs   []string
	}{
		{"tools/observe/jaeger", []string{"github.com/jaegertracing/jaeger/cmd/jaeger"}},
		{"tools/observe/prometheus", []string{"github.com/prometheus/prometheus/cmd/prometheus", "github.com/prometheus/prometheus/cmd/promtool"}},
		{".", []string{"./cmd/worker", "./cmd/emit"}},
	} {
		cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", dir + "/"}, b.pkgs...)...)
		cmd.Dir = filepath.Join(repo, b.module)
		if out, err := cmd.CombinedOutput(); err != nil {
			return Binaries{}, fmt.Errorf("build %s: %w\n%s", strings.Join(b.pkgs, " "), err, out)
		}
	}
	return Binaries{
		Jaeger: filepath.Join(dir, "jaeger"), Prometheus: filepath.Join(dir, "prometheus"),
		Promtool: filepath.Join(dir, "promtool"), Worker: filepath.Join(dir, "worker"), Emit: filepath.Join(dir, "emit"),
	}, nil
}

// Stack is Jaeger, a worker exporting its spans to it, and Prometheus
// scraping the worker, each a process of its own on loopback.
type Stack struct {
	Bin  Binaries
	Repo string
	Dir  string
	// JaegerURL is the query API and placeholder UI; PrometheusURL the
	// query API; Admin the worker's admin endpoint; Outbox its NATS URL;
	// Ingest its HTTP ingest.
	JaegerURL, PrometheusURL, Admin, Outbox, Ingest string
	AdminToken                                      string
	otlp                                            string
	procs                                           []*process
}

type process struct {
	name string
	cmd  *exec.Cmd
	log  string
}

// Config is the worker's configuration, with %[1]s for the data
// directory; the stack fills in the listeners.
type Config struct {
	// Sinks is the YAML of the sinks: list.
	Sinks string
	// WebhookAllow lets webhooks reach the receiver on loopback.
	WebhookAllow []string
}

// Start starts Jaeger, the worker and Prometheus, and waits until each
// answers. Stop stops them.
func Start(ctx context.Context, bin Binaries, repo, dir string, cfg Config) (*Stack, error) {
	s := &Stack{Bin: bin, Repo: repo, Dir: dir, AdminToken: "observe-admin-token"}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	ports, err := freePorts(8)
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }

	jaegerEnv := []string{
		"JAEGER_QUERY_ADDR=" + addr(0), "JAEGER_QUERY_GRPC_ADDR=" + addr(1),
		"JAEGER_HEALTH_ADDR=" + addr(2), "JAEGER_OTLP_HTTP_ADDR=" + addr(3),
	}
	if err := s.run(ctx, "jaeger", jaegerEnv, bin.Jaeger, "--config", filepath.Join(repo, "tools/observe/jaeger.yaml")); err != nil {
		return nil, err
	}
	s.JaegerURL, s.otlp = "http://"+addr(0), "http://"+addr(3)
	if err := s.waitHTTP(ctx, "jaeger", "http://"+addr(2)+"/status"); err != nil {
		return nil, err
	}

	s.Admin, s.Outbox, s.Ingest = "http://"+addr(4), "nats://"+addr(5), "http://"+addr(6)
	allow := strings.Join(cfg.WebhookAllow, ", ")
	workerCfg := fmt.Sprintf(`node_id: observe-node
data_dir: %s/data
log: {level: info, format: json}
admin: {listen: %q, token: %q, trace_url: "%s/trace/{trace_id}"}
ingest: {listen: %q}
outbox: {listen: %q, sync: always}
webhook_allow: [%s]
sinks:
%s`, dir, addr(4), s.AdminToken, s.JaegerURL, addr(6), addr(5), allow, cfg.Sinks)
	cfgPath := filepath.Join(dir, "courier.yaml")
	if err := os.WriteFile(cfgPath, []byte(workerCfg), 0o600); err != nil {
		return nil, fmt.Errorf("worker config: %w", err)
	}
	if err := s.run(ctx, "worker", s.OTelEnv("courier-worker"), bin.Worker, "run", "--config", cfgPath); err != nil {
		return nil, err
	}
	if err := s.waitHTTP(ctx, "worker", s.Admin+"/readyz"); err != nil {
		return nil, err
	}

	promCfg, err := s.prometheusConfig(addr(4))
	if err != nil {
		return nil, err
	}
	if err := s.run(ctx, "prometheus", nil, bin.Prometheus, "--config.file", promCfg,
		"--storage.tsdb.path", filepath.Join(dir, "prometheus"), "--web.listen-address", addr(7),
		"--enable-feature=exemplar-storage", "--log.level=warn"); err != nil {
		return nil, err
	}
	s.PrometheusURL = "http://" + addr(7)
	if err := s.waitHTTP(ctx, "prometheus", s.PrometheusURL+"/-/ready"); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// OTelEnv is the environment that sends a program's spans to Jaeger: the
// standard OTEL_* variables, flushed every 100 ms.
func (s *Stack) OTelEnv(service string) []string {
	return []string{
		"OTEL_SERVICE_NAME=" + service,
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + s.otlp,
		"OTEL_BSP_SCHEDULE_DELAY=100",
	}
}

// prometheusConfig is deploy/prometheus/prometheus.yml with the scrape
// target pointed at this worker, scraped every second, and the alert rules.
func (s *Stack) prometheusConfig(target string) (string, error) {
	b, err := os.ReadFile(filepath.Join(s.Repo, "deploy/prometheus/prometheus.yml"))
	if err != nil {
		return "", fmt.Errorf("prometheus config: %w", err)
	}
	text := string(b)
	const compose = `["courier-1:9464", "courier-2:9464", "courier-3:9464"]`
	if !strings.Contains(text, compose) {
		return "", fmt.Errorf("deploy/prometheus/prometheus.yml no longer lists %s; update the observe harness", compose)
	}
	text = strings.Replace(text, compose, fmt.Sprintf("[%q]", target), 1)
	if !strings.Contains(text, "scrape_interval: 5s") {
		return "", errors.New("deploy/prometheus/prometheus.yml no longer says scrape_interval: 5s; update the observe harness, which scrapes every second")
	}
	text = strings.Replace(text, "scrape_interval: 5s", "scrape_interval: 1s", 1)
	text = strings.ReplaceAll(text, "alerts.yml", filepath.Join(s.Repo, "deploy/prometheus/alerts.yml"))
	path := filepath.Join(s.Dir, "prometheus.yml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return "", fmt.Errorf("prometheus config: %w", err)
	}
	return path, nil
}

func (s *Stack) run(ctx context.Context, name string, env []string, bin string, args ...string) error {
	logPath := filepath.Join(s.Dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("%s log: %w", name, err)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	f.Close()
	s.procs = append(s.procs, &process{name: name, cmd: cmd, log: logPath})
	return nil
}

// waitHTTP waits up to a minute for url to answer 200.
func (s *Stack) waitHTTP(ctx context.Context, name, url string) error {
	deadline := time.Now().Add(time.Minute)
	var last error
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer in a minute: %w\n%s", name, last, s.Log(name))
}

// Log is what a process of the stack wrote.
func (s *Stack) Log(name string) string {
	for _, p := range s.procs {
		if p.name == name {
			b, _ := os.ReadFile(p.log)
			return string(b)
		}
	}
	return ""
}

// Stop interrupts every process, the last started first, and waits for it.
func (s *Stack) Stop() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		p := s.procs[i]
		_ = p.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
	}
	s.procs = nil
}

// Emit runs emit with the stack's OTel environment, so its span starts
// the event's trace.
func (s *Stack) Emit(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, s.Bin.Emit, append([]string{"--url", s.Outbox, "--spool", filepath.Join(s.Dir, "spool")}, args...)...)
	cmd.Env = append(os.Environ(), s.OTelEnv("courier-emit")...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("emit %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// Worker runs a worker command against the stack's configuration.
func (s *Stack) Worker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, s.Bin.Worker, append(args, "--config", filepath.Join(s.Dir, "courier.yaml"))...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("worker %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, errors.Join(errors.New("free port"), err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// TraceOf is the id of the trace an event started, from the worker's
// event log (the admin API's GET /v1/events/{id}); "" until it is logged.
func (s *Stack) TraceOf(ctx context.Context, eventID string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Admin+"/v1/events/"+eventID, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+s.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("event %s: %w", eventID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return "", nil
	}
	var body struct {
		Event struct {
			TraceID string `json:"trace_id"`
		} `json:"event"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("event %s: %w", eventID, err)
	}
	return body.Event.TraceID, nil
}

// Trickle posts an event to the HTTP ingest every interval until ctx ends,
// so the dashboard's rates have something to measure. Events alternate
// between a volume and a VM type; each is retried once by /flaky.
func (s *Stack) Trickle(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		typ := "VOLUME_SET"
		if i%2 == 1 {
			typ = "VM.START"
		}
		_ = s.Post(ctx, fmt.Sprintf(`{"id":"trickle-%d","type":%q}`, i, typ), "")
	}
}

// Post sends one JSON envelope to the HTTP ingest, under the producer's
// span traceparent when given.
func (s *Stack) Post(ctx context.Context, envelope, traceparent string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Ingest+"/v1/events", strings.NewReader(envelope))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ingest answered %s", resp.Status)
	}
	return nil
}

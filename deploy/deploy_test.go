// Package deploy holds deployment files; its test checks that they parse and
// that the dashboard only queries metrics the worker exports.
package deploy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"gopkg.in/yaml.v3"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/observability"
	"github.com/courierhq/courier/sinks/builtin"
	"github.com/courierhq/courier/worker"
)

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func TestDeploymentFilesParse(t *testing.T) {
	compose := readYAML(t, "compose.yaml")
	services, _ := compose["services"].(map[string]any)
	workers := []string{"courier-1", "courier-2", "courier-3"}
	for _, s := range append([]string{"rabbitmq", "kafka", "jaeger", "prometheus", "grafana", "receiver"}, workers...) {
		if services[s] == nil {
			t.Errorf("compose.yaml has no %s service", s)
		}
	}
	prom := readYAML(t, "prometheus/prometheus.yml")
	b, _ := yaml.Marshal(prom)
	for _, w := range workers {
		if !strings.Contains(string(b), w+":9464") {
			t.Errorf("prometheus.yml does not scrape %s's admin port (%s:9464)", w, w)
		}
	}
	readYAML(t, "grafana/provisioning/datasources/datasources.yaml")
	readYAML(t, "grafana/provisioning/dashboards/dashboards.yaml")

	// Every compose worker's configuration, with the environment compose
	// gives that container: a three-node cluster with the chart's
	// credentials, none of them written in a file.
	for _, w := range workers {
		env := composeEnv(t, services[w])
		if env["NODE_ID"] != w {
			t.Errorf("%s: NODE_ID = %q", w, env["NODE_ID"])
		}
		cfg := parseConfig(t, "compose/courier.yaml", func(name string) (string, bool) {
			if _, ok := env[name]; !ok {
				return "", false
			}
			return "from-env-" + name, true
		})
		if cfg == nil {
			continue
		}
		if cfg.NodeID != "from-env-NODE_ID" || cfg.Admin.Listen != "0.0.0.0:9464" || cfg.Admin.Token == "" {
			t.Errorf("%s: node_id %q, admin %s with token %v: want the node's id, 0.0.0.0:9464 (Prometheus scrapes it) and a token",
				w, cfg.NodeID, cfg.Admin.Listen, cfg.Admin.Token != "")
		}
		if len(cfg.Cluster.Routes) != len(workers) || cfg.Replication() != 3 || cfg.Cluster.Auth.Password == "" || !cfg.Outbox.Auth.On() {
			t.Errorf("%s: routes %v, replicas %d, route auth %v, outbox auth %v: want the chart's three-node quorum and credentials",
				w, cfg.Cluster.Routes, cfg.Replication(), cfg.Cluster.Auth.Password != "", cfg.Outbox.Auth.On())
		}
	}
	parseConfig(t, "courier.yaml", func(string) (string, bool) { return "whsec_dGVzdA==", true })
}

// composeEnv is a compose service's environment after its YAML merge keys.
func composeEnv(t *testing.T, service any) map[string]any {
	t.Helper()
	s, _ := service.(map[string]any)
	env, _ := s["environment"].(map[string]any)
	if env == nil {
		t.Fatalf("service has no environment map: %v", s)
	}
	return env
}

func parseConfig(t *testing.T, path string, lookup func(string) (string, bool)) *config.File {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(b, lookup, builtin.Kinds())
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return nil
	}
	return cfg
}

var metricRef = regexp.MustCompile(`\bcourier_[a-z_]+`)

// TestDashboardQueriesOnlyExportedMetrics runs a node through a delivery, a
// retry and a dead letter, scrapes /metrics, and checks every metric the
// dashboard's queries name.
func TestDashboardQueriesOnlyExportedMetrics(t *testing.T) {
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile("grafana/dashboards/courier.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("courier.json: %v", err)
	}
	if len(dash.Panels) == 0 {
		t.Fatal("dashboard has no panels")
	}

	exported := scrapeFamilies(t)
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			refs := metricRef.FindAllString(tg.Expr, -1)
			if len(refs) == 0 {
				t.Errorf("panel %q: query %q names no courier metric", p.Title, tg.Expr)
			}
			for _, m := range refs {
				family := m
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					family = strings.TrimSuffix(family, suffix)
				}
				if !exported[family] {
					t.Errorf("panel %q: metric %s is not exported (exported: %v)", p.Title, m, keys(exported))
				}
			}
		}
	}
}

func scrapeFamilies(t *testing.T) map[string]bool {
	t.Helper()
	tel, err := observability.New(sdktrace.NewTracerProvider())
	if err != nil {
		t.Fatal(err)
	}
	rcv := testutil.NewReceiver(t)
	rcv.Answer(testutil.RefuseBadRetryOthers)
	n := testutil.StartNode(t, "ingest: {listen: \"127.0.0.1:0\"}\nsinks:\n  - name: audit\n    type: webhook\n    url: "+rcv.URL()+
		"\n    retry: {initial: 20ms, max_interval: 100ms}\n", nil, worker.WithTelemetry(tel))
	p := n.Publisher(t)
	for _, e := range []event.Envelope{{Type: "VOLUME_CREATE"}, {ID: "bad-1", Type: "VOLUME_CREATE"}} {
		if _, err := p.Emit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	// One more through the HTTP ingest, for its metrics.
	ingest := httptest.NewServer(n.IngestHandler())
	defer ingest.Close()
	resp, err := http.Post(ingest.URL+"/v1/events", "application/json", strings.NewReader(`{"type":"VOLUME_CREATE"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest answered %s", resp.Status)
	}
	testutil.Eventually(t, 20e9, func() bool {
		s := n.Loop("audit").Stats()
		return s.Delivered.Load() == 2 && s.DeadLettered.Load() == 1
	}, "delivery and dead letter")
	_, body := testutil.Get(t, n.AdminHandler(), "/metrics")
	families := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = true
		}
	}
	return families
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		if strings.HasPrefix(k, "courier_") {
			out = append(out, k)
		}
	}
	return out
}

// Package deploy holds deployment files; its test checks that they parse and
// that the dashboard only queries metrics the worker exports.
package deploy

import (
	"encoding/json"
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
	for _, s := range []string{"worker", "rabbitmq", "kafka", "jaeger", "prometheus", "grafana"} {
		if services[s] == nil {
			t.Errorf("compose.yaml has no %s service", s)
		}
	}
	prom := readYAML(t, "prometheus/prometheus.yml")
	if b, _ := yaml.Marshal(prom); !strings.Contains(string(b), "worker:9464") {
		t.Errorf("prometheus.yml does not scrape the worker's admin port (worker:9464)")
	}
	readYAML(t, "grafana/provisioning/datasources/datasources.yaml")
	readYAML(t, "grafana/provisioning/dashboards/dashboards.yaml")
	for _, path := range []string{"compose/courier.yaml", "courier.yaml"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse(b, func(string) (string, bool) { return "whsec_dGVzdA==", true })
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if path == "compose/courier.yaml" && cfg.Admin.Listen != "0.0.0.0:9464" {
			t.Errorf("compose worker admin listen = %s, want 0.0.0.0:9464 (Prometheus scrapes it)", cfg.Admin.Listen)
		}
	}
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
	n := testutil.StartNode(t, "sinks:\n  - name: audit\n    type: webhook\n    url: "+rcv.URL()+
		"\n    retry: {initial: 20ms, max_interval: 100ms}\n", nil, worker.WithTelemetry(tel))
	p := n.Publisher(t)
	for _, e := range []event.Envelope{{Type: "VOLUME_CREATE"}, {ID: "bad-1", Type: "VOLUME_CREATE"}} {
		if _, err := p.Emit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 20e9, func() bool {
		s := n.Loop("audit").Stats()
		return s.Delivered.Load() == 1 && s.DeadLettered.Load() == 1
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

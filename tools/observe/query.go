package observe

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Span is one span as Jaeger's query API (/api/traces/{id}) returns it.
type Span struct {
	SpanID     string `json:"spanID"`
	Operation  string `json:"operationName"`
	References []struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	StartTime int64 `json:"startTime"` // µs since the epoch
	Duration  int64 `json:"duration"`  // µs
	Tags      []Tag `json:"tags"`
	Logs      []struct {
		Fields []Tag `json:"fields"`
	} `json:"logs"`
	ProcessID string `json:"processID"`
	Service   string `json:"-"`
}

// Tag is a span attribute or an event's field.
type Tag struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// Tag returns the attribute's value as text, "" when absent.
func (s Span) Tag(key string) string {
	for _, t := range s.Tags {
		if t.Key == key {
			return fmt.Sprint(t.Value)
		}
	}
	return ""
}

// Events are the names of the span's events ("dead_lettered", "replayed").
func (s Span) Events() []string {
	var out []string
	for _, l := range s.Logs {
		for _, f := range l.Fields {
			if f.Key == "event" {
				out = append(out, fmt.Sprint(f.Value))
			}
		}
	}
	return out
}

// Parent is the span's parent's id, "" for a root.
func (s Span) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Trace fetches a trace from Jaeger; not found is an error.
func (s *Stack) Trace(ctx context.Context, traceID string) ([]Span, error) {
	var body struct {
		Data []struct {
			Spans     []Span `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	if err := getJSON(ctx, s.JaegerURL+"/api/traces/"+traceID, &body); err != nil {
		return nil, err
	}
	if len(body.Data) != 1 {
		return nil, fmt.Errorf("trace %s: Jaeger returned %d traces", traceID, len(body.Data))
	}
	spans := body.Data[0].Spans
	for i := range spans {
		spans[i].Service = body.Data[0].Processes[spans[i].ProcessID].ServiceName
	}
	slices.SortFunc(spans, func(a, b Span) int { return int(a.StartTime - b.StartTime) })
	return spans, nil
}

// SpanTree renders a trace as an indented tree, with each span's start
// relative to the trace's and its duration.
func SpanTree(spans []Span) string {
	if len(spans) == 0 {
		return ""
	}
	t0 := spans[0].StartTime
	children := map[string][]Span{}
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.SpanID] = true
	}
	var roots []Span
	for _, s := range spans {
		if p := s.Parent(); p != "" && ids[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	var b strings.Builder
	var walk func(s Span, depth int)
	walk = func(s Span, depth int) {
		extra := []string{}
		for _, k := range []string{"courier.sink", "courier.delivery.attempt", "courier.delivery.outcome", "http.response.status_code"} {
			if v := s.Tag(k); v != "" {
				extra = append(extra, k+"="+v)
			}
		}
		for _, e := range s.Events() {
			extra = append(extra, "event:"+e)
		}
		fmt.Fprintf(&b, "%s%s [%s] +%s %s %s\n", strings.Repeat("  ", depth), s.Operation, s.Service,
			time.Duration(s.StartTime-t0)*time.Microsecond, time.Duration(s.Duration)*time.Microsecond, strings.Join(extra, " "))
		for _, c := range children[s.SpanID] {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	return b.String()
}

// Sample is one series of an instant query's result.
type Sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// Finite reports whether the sample's value is a number (not NaN or ±Inf,
// which a panel shows as nothing).
func (s Sample) Finite() bool {
	v, ok := s.Value[1].(string)
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(v, 64)
	return err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
}

// Query evaluates a PromQL expression now.
func (s *Stack) Query(ctx context.Context, expr string) ([]Sample, error) {
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []Sample `json:"result"`
		} `json:"data"`
	}
	if err := getJSON(ctx, s.PrometheusURL+"/api/v1/query?query="+url.QueryEscape(expr), &body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", expr, body.Error)
	}
	return body.Data.Result, nil
}

// Exemplar is a histogram sample's trace id, as Prometheus keeps it.
type Exemplar struct {
	Labels map[string]string `json:"labels"`
	Value  string            `json:"value"`
}

// Exemplars returns the exemplars of a series selector over the last
// window.
func (s *Stack) Exemplars(ctx context.Context, selector string, window time.Duration) ([]Exemplar, error) {
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   []struct {
			Exemplars []Exemplar `json:"exemplars"`
		} `json:"data"`
	}
	now := time.Now()
	q := url.Values{"query": {selector}, "start": {fmt.Sprint(now.Add(-window).Unix())}, "end": {fmt.Sprint(now.Unix())}}
	if err := getJSON(ctx, s.PrometheusURL+"/api/v1/query_exemplars?"+q.Encode(), &body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("exemplars %s: %s", selector, body.Error)
	}
	var out []Exemplar
	for _, d := range body.Data {
		out = append(out, d.Exemplars...)
	}
	return out, nil
}

// Panel is one panel of the provisioned Grafana dashboard.
type Panel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// Panels reads deploy/grafana/dashboards/courier.json.
func Panels(repo string) ([]Panel, error) {
	b, err := os.ReadFile(filepath.Join(repo, "deploy/grafana/dashboards/courier.json"))
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	var dash struct {
		Panels []Panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	return dash.Panels, nil
}

// GrafanaExpr substitutes what Grafana would in a panel's expression:
// $__rate_interval, at least four scrape intervals (here 1s), and
// $__interval.
func GrafanaExpr(expr string) string {
	return strings.NewReplacer("$__rate_interval", "15s", "${__rate_interval}", "15s", "$__interval", "1s").Replace(expr)
}

func getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %.300s", u, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

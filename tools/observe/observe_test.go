package observe

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const repo = "../.."

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %s", d, what, detail)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDeliveriesInJaegerAndPrometheus runs the worker beside a real Jaeger
// and a real Prometheus and checks what an SRE would look at: one trace per
// event from emit to every attempt and webhook request, dead letters and
// replays in their event's trace, every dashboard panel with data, and
// exemplars that name real traces.
func TestDeliveriesInJaegerAndPrometheus(t *testing.T) {
	// Building Jaeger and Prometheus from an empty cache takes minutes on
	// a small machine: that is the build's budget, not the scenario's.
	buildCtx, cancelBuild := context.WithTimeout(t.Context(), 40*time.Minute)
	defer cancelBuild()
	bin, err := Build(buildCtx, repo, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	rcv, err := StartReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	s, err := Start(ctx, bin, repo, t.TempDir(), Config{Sinks: rcv.Sinks(), WebhookAllow: []string{"127.0.0.1/32"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	// Through emit; through the HTTP ingest, under a producer's span; and
	// one that /refuse dead-letters.
	if _, err := s.Emit(ctx, "--id", "obs-emit", "--type", "VOLUME_CREATE", "--data", `{"name":"gv1"}`); err != nil {
		t.Fatal(err)
	}
	const producerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	if err := s.Post(ctx, `{"id":"obs-ingest","type":"VOLUME_DELETE"}`, "00-"+producerTrace+"-00f067aa0ba902b7-01"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Emit(ctx, "--id", "obs-dead", "--type", "VM.CREATE", "--data", `{"vm":"i-1"}`); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"obs-emit", "obs-ingest", "obs-dead"} {
		eventually(t, time.Minute, id+" delivered to /flaky after its retry", func() (bool, string) { return rcv.Got("/flaky", id), "" })
	}

	traceOf := func(id string) string {
		var trace string
		eventually(t, time.Minute, "the event log to hold "+id+"'s trace id", func() (bool, string) {
			var err error
			trace, err = s.TraceOf(ctx, id)
			return err == nil && trace != "", fmt.Sprint(err)
		})
		return trace
	}
	// spansOf waits until Jaeger holds the spans want says, then returns them.
	spansOf := func(trace string, want func([]Span) string) []Span {
		var spans []Span
		eventually(t, time.Minute, "trace "+trace+" in Jaeger", func() (bool, string) {
			var err error
			if spans, err = s.Trace(ctx, trace); err != nil {
				return false, err.Error()
			}
			miss := want(spans)
			return miss == "", miss + "\n" + SpanTree(spans)
		})
		return spans
	}

	emitTrace := traceOf("obs-emit")
	spans := spansOf(emitTrace, attemptsWanted("flaky", "send COURIER_OUTBOX", "courier-emit"))
	t.Logf("trace of an event emitted with emit, as Jaeger's query API returns it:\n%s", SpanTree(spans))

	if got := traceOf("obs-ingest"); got != producerTrace {
		t.Errorf("the ingested event's trace is %s, want the producer's %s (its traceparent)", got, producerTrace)
	}
	spansOf(producerTrace, attemptsWanted("flaky", "send COURIER_OUTBOX", "courier-worker"))

	deadTrace := traceOf("obs-dead")
	spansOf(deadTrace, func(spans []Span) string {
		if !slices.ContainsFunc(spans, func(s Span) bool {
			return s.Operation == "process refuser" && slices.Contains(s.Events(), "dead_lettered")
		}) {
			return "no process refuser span with the dead_lettered event"
		}
		return ""
	})
	rcv.Accept()
	if _, err := s.Worker(ctx, "dlq", "replay", "--sink", "refuser", "--all"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the replayed event at /refuse", func() (bool, string) { return rcv.Got("/refuse", "obs-dead"), "" })
	spans = spansOf(deadTrace, func(spans []Span) string {
		for _, s := range spans {
			if s.Operation == "process refuser" && slices.Contains(s.Events(), "replayed") && s.Tag("courier.delivery.outcome") == "delivered" {
				return ""
			}
		}
		return "no delivered process refuser span with the replayed event in the original trace"
	})
	t.Logf("trace of a dead-lettered, then replayed event:\n%s", SpanTree(spans))

	// Every panel of the dashboard, as Grafana would ask Prometheus, while
	// events keep coming: each target must return a number, not only
	// series whose rate is NaN.
	trickle, stopTrickle := context.WithCancel(ctx)
	defer stopTrickle()
	go s.Trickle(trickle, 200*time.Millisecond)
	panels, err := Panels(repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range panels {
		for _, tg := range p.Targets {
			expr := GrafanaExpr(tg.Expr)
			eventually(t, time.Minute, fmt.Sprintf("panel %q (%s) to return data", p.Title, expr), func() (bool, string) {
				res, err := s.Query(ctx, expr)
				return err == nil && slices.ContainsFunc(res, Sample.Finite), fmt.Sprintf("%d series, none a number: %v %v", len(res), res, err)
			})
		}
	}

	// Exemplars: a latency sample links to the trace of a delivery.
	traces := map[string]bool{emitTrace: true, producerTrace: true, deadTrace: true}
	eventually(t, time.Minute, "an exemplar of courier_delivery_latency_seconds naming one of the traces", func() (bool, string) {
		ex, err := s.Exemplars(ctx, "courier_delivery_latency_seconds_bucket", 10*time.Minute)
		if err != nil {
			return false, err.Error()
		}
		for _, e := range ex {
			if traces[e.Labels["trace_id"]] {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d exemplars, none of %v", len(ex), traces)
	})
}

// attemptsWanted checks a delivered event's trace: the emit span, then for
// the sink a failed attempt and the successful retry, each with its
// webhook client span below it.
func attemptsWanted(sink, emitSpan, emitService string) func([]Span) string {
	return func(spans []Span) string {
		byID := map[string]Span{}
		for _, s := range spans {
			byID[s.SpanID] = s
		}
		if !slices.ContainsFunc(spans, func(s Span) bool { return s.Operation == emitSpan && s.Service == emitService }) {
			return fmt.Sprintf("no %q span from %s", emitSpan, emitService)
		}
		outcomes := map[string]string{}
		for _, s := range spans {
			if s.Operation != "process "+sink {
				continue
			}
			if s.Tag("courier.sink") != sink {
				return "an attempt without courier.sink"
			}
			client := slices.ContainsFunc(spans, func(c Span) bool { return c.Parent() == s.SpanID && c.Operation == http.MethodPost })
			if !client {
				continue
			}
			outcomes[s.Tag("courier.delivery.attempt")] = s.Tag("courier.delivery.outcome")
		}
		if outcomes["1"] != "retried" || outcomes["2"] != "delivered" {
			return fmt.Sprintf("attempts of %s with a webhook request below them: %v, want 1 retried and 2 delivered", sink, outcomes)
		}
		return ""
	}
}

// TestAlertRules checks deploy/prometheus/alerts.yml with promtool, and
// runs its unit tests (alerts_test.yml).
func TestAlertRules(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", dir+"/", "github.com/prometheus/prometheus/cmd/promtool")
	cmd.Dir = filepath.Join(repo, "tools/observe/prometheus")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build promtool: %v\n%s", err, out)
	}
	promtool := filepath.Join(dir, "promtool")
	rules := filepath.Join(repo, "deploy/prometheus")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
		{"check", "config", "prometheus.yml"},
	} {
		cmd := exec.CommandContext(t.Context(), promtool, args...)
		cmd.Dir = rules
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

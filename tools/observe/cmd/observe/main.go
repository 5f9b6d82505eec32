// Command observe (make observe) builds Jaeger and Prometheus from the
// module proxy, runs a worker that exports its spans to Jaeger and that
// Prometheus scrapes, emits the quick start's events (one fails once and is
// retried, one is dead-lettered), then prints the Jaeger URL of a delivered
// event's trace with its span tree, and each dashboard panel's current
// value. It keeps running until interrupted, unless -exit.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/courierhq/courier/tools/observe"
)

func main() {
	repo := flag.String("repo", "../..", "the repository")
	exit := flag.Bool("exit", false, "stop once the summary is printed")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *repo, *exit); err != nil {
		fmt.Fprintln(os.Stderr, "observe:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, repo string, exit bool) error {
	repo, err := filepath.Abs(repo)
	if err != nil {
		return err
	}
	dir := filepath.Join(repo, "observe")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fmt.Println("== building Jaeger, Prometheus, the worker and emit (the first build takes minutes)")
	bin, err := observe.Build(ctx, repo, filepath.Join(dir, "bin"))
	if err != nil {
		return err
	}
	rcv, err := observe.StartReceiver()
	if err != nil {
		return err
	}
	defer rcv.Close()
	s, err := observe.Start(ctx, bin, repo, dir, observe.Config{Sinks: rcv.Sinks(), WebhookAllow: []string{"127.0.0.1/32"}})
	if err != nil {
		return err
	}
	defer s.Stop()
	fmt.Printf("== Jaeger %s (query API; its UI is a placeholder when built from the module proxy)\n", s.JaegerURL)
	fmt.Printf("== Prometheus %s, scraping the worker's %s/metrics every second\n", s.PrometheusURL, s.Admin)
	fmt.Printf("== console %s (token %s)\n", s.Admin, s.AdminToken)

	fmt.Println("== emitting the quick start's events, and one VM.CREATE that the refusing sink dead-letters")
	if _, err := s.Emit(ctx, "--id", "observe-1", "--type", "VOLUME_CREATE", "--key", "gv1", "--data", `{"name":"gv1"}`); err != nil {
		return err
	}
	if _, err := s.Emit(ctx, "--file", filepath.Join(repo, "examples/events.jsonl")); err != nil {
		return err
	}
	if _, err := s.Emit(ctx, "--id", "observe-dead", "--type", "VM.CREATE", "--data", `{"vm":"i-1"}`); err != nil {
		return err
	}
	if err := waitFor(ctx, func() bool { return rcv.Got("/flaky", "observe-1") && rcv.Got("/flaky", "observe-dead") }); err != nil {
		return fmt.Errorf("deliveries: %w", err)
	}
	var trace string
	var spans []observe.Span
	if err := waitFor(ctx, func() bool {
		trace, _ = s.TraceOf(ctx, "observe-1")
		if trace == "" {
			return false
		}
		spans, err = s.Trace(ctx, trace)
		return err == nil && strings.Count(observe.SpanTree(spans), "process flaky") >= 2
	}); err != nil {
		return fmt.Errorf("trace of observe-1: %w", err)
	}
	fmt.Printf("\n== event observe-1's trace: %s/api/traces/%s\n%s", s.JaegerURL, trace, observe.SpanTree(spans))

	// A steady trickle through the HTTP ingest, so the rates have
	// something to measure; Prometheus scrapes every second.
	go s.Trickle(ctx, 200*time.Millisecond)
	fmt.Println("\n== posting an event every 200 ms to the HTTP ingest; the panels in 20 s")
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(20 * time.Second):
	}
	panels, err := observe.Panels(repo)
	if err != nil {
		return err
	}
	fmt.Println("\n== dashboard panels, evaluated by Prometheus now")
	for _, p := range panels {
		fmt.Printf("%s\n", p.Title)
		for _, tg := range p.Targets {
			res, err := s.Query(ctx, observe.GrafanaExpr(tg.Expr))
			if err != nil {
				fmt.Printf("    %s: %v\n", tg.Expr, err)
				continue
			}
			if len(res) == 0 {
				fmt.Printf("    %s: no data\n", tg.Expr)
			}
			for _, r := range res {
				fmt.Printf("    %v = %v\n", labels(r.Metric), r.Value[1])
			}
		}
	}
	if exit {
		return nil
	}
	fmt.Println("\n== running; Ctrl-C stops everything (logs and data in ./observe)")
	<-ctx.Done()
	return nil
}

func labels(m map[string]string) string {
	var parts []string
	for k, v := range m {
		if k != "__name__" && k != "job" && k != "instance" {
			parts = append(parts, k+"="+v)
		}
	}
	if len(parts) == 0 {
		return "{}"
	}
	slices.Sort(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

func waitFor(ctx context.Context, cond func() bool) error {
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within a minute")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

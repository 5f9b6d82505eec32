package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/worker"
)

// TestACloudEventInIsTheSameCloudEventOut: CloudEvents sent by the
// CloudEvents SDK for Go to the ingest endpoint, in structured and binary
// mode, reach CloudEvents webhook sinks (structured and binary) as events
// the SDK reads back with the same attributes, extensions and data.
func TestACloudEventInIsTheSameCloudEventOut(t *testing.T) {
	structured, binary := testutil.NewReceiver(t), testutil.NewReceiver(t)
	n := testutil.StartNode(t, "ingest:\n  listen: 127.0.0.1:0\nsinks:\n"+
		sinkYAML("structured", structured.URL(), "format: cloudevents")+
		sinkYAML("binary", binary.URL(), "format: cloudevents\n    cloudevents_mode: binary"), nil)
	hs := httptest.NewServer(n.IngestHandler())
	t.Cleanup(hs.Close)
	client, err := cloudevents.NewClientHTTP(cehttp.WithTarget(hs.URL + "/v1/events"))
	if err != nil {
		t.Fatal(err)
	}

	sent := map[string]cloudevents.Event{}
	for _, mode := range []string{"structured", "binary"} {
		ev := cloudevents.NewEvent()
		ev.SetID("ce-" + mode)
		ev.SetSource("/cloudstack/management-server/1")
		ev.SetType("VOLUME.CREATE")
		ev.SetSubject("vol-3")
		ev.SetTime(time.Date(2026, 12, 2, 10, 0, 0, 123000000, time.UTC))
		ev.SetExtension("account", "acme")
		ev.SetExtension("resourceid", "3")
		ev.SetExtension("level", "INFO")
		if err := ev.SetData(cloudevents.ApplicationJSON, map[string]any{"size": 20, "name": "data-1"}); err != nil {
			t.Fatal(err)
		}
		ctx := cloudevents.WithEncodingStructured(context.Background())
		if mode == "binary" {
			ctx = cloudevents.WithEncodingBinary(context.Background())
		}
		if res := client.Send(ctx, ev); !cloudevents.IsACK(res) {
			t.Fatalf("send %s: %v", mode, res)
		}
		sent[ev.ID()] = ev
	}

	testutil.Eventually(t, waitFor, func() bool {
		return len(structured.Requests()) == 2 && len(binary.Requests()) == 2
	}, "both events at both sinks")
	for _, rcv := range []*testutil.Receiver{structured, binary} {
		for _, d := range rcv.Requests() {
			got, err := binding.ToEvent(context.Background(), cehttp.NewMessage(d.Header, io.NopCloser(bytes.NewReader(d.Body))))
			if err != nil {
				t.Fatalf("the SDK cannot read the delivered event: %v\n%s %s", err, d.Header, d.Body)
			}
			want, ok := sent[got.ID()]
			if !ok {
				t.Fatalf("delivered an event never sent: %s", got)
			}
			// node and the level Courier fills in are Courier's additions.
			ext := got.Extensions()
			delete(ext, "node")
			if got.Source() != want.Source() || got.Type() != want.Type() || got.Subject() != want.Subject() ||
				!got.Time().Equal(want.Time()) || !reflect.DeepEqual(ext, want.Extensions()) || !sameJSON(t, got.Data(), want.Data()) {
				t.Errorf("out:\n%s\nin:\n%s", got, want)
			}
		}
	}
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// TestIngestIsMeasuredAndTracedToTheDelivery: a request with traceparent
// gives one trace from the HTTP producer's span through the emit span to
// the delivery attempt, and /metrics counts the requests and events.
func TestIngestIsMeasuredAndTracedToTheDelivery(t *testing.T) {
	spans, _, tel := traced(t)
	rcv := testutil.NewReceiver(t)
	n := testutil.StartNode(t, "ingest:\n  listen: 127.0.0.1:0\nsinks:\n"+sinkYAML("audit", rcv.URL(), ""), nil, worker.WithTelemetry(tel))
	hs := httptest.NewServer(n.IngestHandler())
	t.Cleanup(hs.Close)
	const producerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, c := range []struct{ contentType, body, traceparent string }{
		{"application/json", `{"id":"traced","type":"VOLUME_CREATE"}`, "00-" + producerTrace + "-00f067aa0ba902b7-01"},
		{"application/x-ndjson", "{\"type\":\"T\"}\n{\"type\":\"bad type\"}\n", ""},
		{"text/plain", "x", ""},
	} {
		req, _ := http.NewRequest(http.MethodPost, hs.URL+"/v1/events", strings.NewReader(c.body))
		req.Header.Set("Content-Type", c.contentType)
		if c.traceparent != "" {
			req.Header.Set("traceparent", c.traceparent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	testutil.Eventually(t, waitFor, func() bool { return rcv.Seen("traced") == 1 }, "traced event delivered")
	// The batch's event may arrive first: look for the traced one.
	var got string
	for _, d := range rcv.Requests() {
		if strings.Contains(string(d.Body), `"id":"traced"`) {
			got = d.Header.Get("traceparent")
		}
	}
	if !strings.Contains(got, producerTrace) {
		t.Errorf("the receiver got traceparent %q with the traced event, want the producer's trace %s", got, producerTrace)
	}
	testutil.Eventually(t, waitFor, func() bool {
		for _, s := range spans.GetSpans().Snapshots() {
			if s.SpanKind() == trace.SpanKindConsumer && s.SpanContext().TraceID().String() == producerTrace {
				return true
			}
		}
		return false
	}, "the delivery attempt's span in the producer's trace")

	_, body := testutil.Get(t, n.AdminHandler(), "/metrics")
	for _, want := range []string{
		`courier_ingest_requests_total{outcome="ok"} 2`,
		`courier_ingest_requests_total{outcome="unsupported"} 1`,
		`courier_ingest_events_total{result="stored"} 2`,
		`courier_ingest_events_total{result="invalid"} 1`,
		`courier_ingest_duration_seconds_count{outcome="ok"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", grepLines(body, "courier_ingest"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

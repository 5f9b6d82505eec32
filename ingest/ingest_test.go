package ingest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/ingest"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
)

// endpoint is the ingest handler on a real HTTP server, storing in a real
// embedded outbox.
type endpoint struct {
	url string
	js  jetstream.JetStream
	srv *outbox.Server
}

type setup struct {
	limits  outbox.Limits
	tokens  map[string]string
	maxBody int64
	tracer  trace.TracerProvider
}

func start(t *testing.T, s setup) endpoint {
	t.Helper()
	srv, js := testutil.StartOutbox(t, s.limits)
	// The events stream keeps events only for the sinks' consumers.
	if _, err := outbox.EnsureConsumer(context.Background(), js, "probe", time.Minute, 100000); err != nil {
		t.Fatal(err)
	}
	opts := []outbox.PublisherOption{outbox.WithNode("n1")}
	if s.tracer != nil {
		opts = append(opts, outbox.WithTracerProvider(s.tracer))
	}
	pub, err := outbox.Dial(context.Background(), srv.ClientURL(), 5*time.Second, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	if s.maxBody == 0 {
		s.maxBody = 1 << 20
	}
	h, err := ingest.New(ingest.Options{Publisher: pub, Tokens: s.tokens, MaxBodyBytes: s.maxBody, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return endpoint{url: hs.URL + "/v1/events", js: js, srv: srv}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(a.body), v); err != nil {
		t.Fatalf("answer %d %q: %v", a.status, a.body, err)
	}
}

// post sends body with the content type and headers given as name, value
// pairs.
func post(t *testing.T, url, contentType, body string, headers ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func storedByID(t *testing.T, js jetstream.JetStream) map[string]event.Envelope {
	t.Helper()
	out := map[string]event.Envelope{}
	for _, e := range testutil.StoredEnvelopes(t, js) {
		if _, dup := out[e.ID]; dup {
			t.Errorf("event %s stored twice", e.ID)
		}
		out[e.ID] = e
	}
	return out
}

func TestOneEnvelopeIsAnsweredWithItsIDOnceStored(t *testing.T) {
	ep := start(t, setup{})
	a := post(t, ep.url, "application/json", `{"type":"VOLUME_CREATE","key":"gv1","data":{"name":"gv1"}}`)
	if a.status != http.StatusOK {
		t.Fatalf("status %d %s", a.status, a.body)
	}
	var r ingest.Response
	a.decode(t, &r)
	got := storedByID(t, ep.js)
	e, ok := got[r.ID]
	if r.Result != "stored" || !ok || len(got) != 1 {
		t.Fatalf("answer %+v; stored %v", r, got)
	}
	if e.Type != "VOLUME_CREATE" || e.Key != "gv1" || string(e.Data) != `{"name":"gv1"}` || e.Node != "n1" {
		t.Errorf("stored %+v", e)
	}
}

func TestBatchesAnswerEachEventInOrder(t *testing.T) {
	ep := start(t, setup{})
	a := post(t, ep.url, "application/json", `[{"id":"a1","type":"T"},{"type":"bad type"},{"id":"a3","type":"T","colour":"red"},{"id":"a4","type":"T"}]`)
	var br ingest.BatchResponse
	a.decode(t, &br)
	if a.status != http.StatusOK || br.Stored != 2 || br.Invalid != 2 || len(br.Results) != 4 {
		t.Fatalf("array: %d %s", a.status, a.body)
	}
	for i, want := range []string{"stored", "invalid", "invalid", "stored"} {
		if r := br.Results[i]; r.Result != want || r.Index != i {
			t.Errorf("result %d = %+v, want %s", i, r, want)
		}
	}
	if !strings.Contains(br.Results[2].Reason, "colour") {
		t.Errorf("unknown field reason %q does not name it", br.Results[2].Reason)
	}

	ndjson := "{\"id\":\"n1\",\"type\":\"T\"}\n\n{\"id\":\"n2\",\"type\":\"T\",\"level\":\"LOUD\"}\r\n{\"id\":\"n3\",\"type\":\"T\"}\n"
	a = post(t, ep.url, "application/x-ndjson", ndjson)
	br = ingest.BatchResponse{}
	a.decode(t, &br)
	if a.status != http.StatusOK || br.Stored != 2 || br.Invalid != 1 {
		t.Fatalf("ndjson: %d %s", a.status, a.body)
	}
	if r := br.Results[1]; r.Line != 3 || r.Result != "invalid" || !strings.Contains(r.Reason, "LOUD") {
		t.Errorf("invalid NDJSON line reported as %+v, want line 3 naming the level", r)
	}
	got := storedByID(t, ep.js)
	for _, id := range []string{"a1", "a4", "n1", "n3"} {
		if _, ok := got[id]; !ok {
			t.Errorf("%s not stored", id)
		}
	}
	if len(got) != 4 {
		t.Errorf("stored %d events, want 4", len(got))
	}
}

func TestARetriedRequestStoresNothingTwice(t *testing.T) {
	ep := start(t, setup{})
	batch := `[{"id":"d1","type":"T"},{"id":"d2","type":"T"}]`
	for i, want := range []int{2, 0} {
		var br ingest.BatchResponse
		post(t, ep.url, "application/json", batch).decode(t, &br)
		if br.Stored != want || br.Stored+br.Duplicates != 2 {
			t.Errorf("batch %d: %+v, want %d stored", i+1, br, want)
		}
	}
	for i, want := range []string{"stored", "duplicate"} {
		var r ingest.Response
		post(t, ep.url, "application/json", `{"type":"T"}`, "Idempotency-Key", "order-17").decode(t, &r)
		if r.ID != "order-17" || r.Result != want {
			t.Errorf("Idempotency-Key request %d: %+v, want %s", i+1, r, want)
		}
	}
	ce := `{"specversion":"1.0","id":"ce-1","source":"/s","type":"T"}`
	for i, want := range []string{"stored", "duplicate"} {
		var r ingest.Response
		post(t, ep.url, "application/cloudevents+json", ce).decode(t, &r)
		if r.ID != "ce-1" || r.Result != want {
			t.Errorf("CloudEvent %d: %+v, want %s", i+1, r, want)
		}
	}
	if got := testutil.StoredIDs(t, ep.js); len(got) != 4 {
		t.Errorf("stored %v, want d1, d2, order-17 and ce-1 once each", got)
	}
}

func TestBadRequestsAreRefusedWithTheReason(t *testing.T) {
	ep := start(t, setup{limits: outbox.Limits{MaxEventSize: 4 << 10}, maxBody: 64 << 10})
	big := `{"type":"T","data":"` + strings.Repeat("x", 8<<10) + `"}`
	for _, c := range []struct {
		name, contentType, body string
		headers                 []string
		status                  int
		says                    string
	}{
		{"malformed JSON", "application/json", `{"type":`, nil, 400, "invalid event: unexpected EOF"},
		{"invalid envelope", "application/json", `{"type":"a b"}`, nil, 400, "type"},
		{"empty array", "application/json", `[]`, nil, 400, "no event"},
		{"NDJSON line not JSON", "application/x-ndjson", "{\"type\":\"T\"}\n{nope\n", nil, 400, "line 2"},
		{"Idempotency-Key on a batch", "application/json", `[{"type":"T"}]`, []string{"Idempotency-Key", "k"}, 400, "each event"},
		{"Idempotency-Key against the id", "application/json", `{"id":"x","type":"T"}`, []string{"Idempotency-Key", "k"}, 400, "differ"},
		{"form post", "application/x-www-form-urlencoded", `type=T`, nil, 415, "application/x-ndjson"},
		{"no content type", "", `{"type":"T"}`, nil, 415, "Content-Type none"},
		{"binary CloudEvent with text data", "text/plain", "hello", []string{"Ce-Specversion", "1.0", "Ce-Id", "b1", "Ce-Source", "/s", "Ce-Type", "T"}, 415, "JSON data only"},
		{"CloudEvent without source", "application/cloudevents+json", `{"specversion":"1.0","id":"c","type":"T"}`, nil, 400, "source is required"},
		{"CloudEvent 0.3", "application/cloudevents+json", `{"specversion":"0.3","id":"c","source":"/s","type":"T"}`, nil, 400, "specversion"},
		{"CloudEvent with an unknown extension", "application/cloudevents+json", `{"specversion":"1.0","id":"c","source":"/s","type":"T","colour":"red"}`, nil, 400, "attribute colour"},
		{"CloudEvent with binary data", "application/cloudevents+json", `{"specversion":"1.0","id":"c","source":"/s","type":"T","data_base64":"aGk="}`, nil, 400, "JSON data only"},
		{"event over max_event_size", "application/json", big, nil, 413, "max_event_size"},
		{"body over max_body_bytes", "application/x-ndjson", strings.Repeat(`{"type":"T"}`+"\n", 6000), nil, 413, "max_body_bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := post(t, ep.url, c.contentType, c.body, c.headers...)
			if a.status != c.status || !strings.Contains(a.body, c.says) {
				t.Errorf("%d %s, want %d saying %q", a.status, a.body, c.status, c.says)
			}
		})
	}
	if got := testutil.StoredIDs(t, ep.js); len(got) != 0 {
		t.Errorf("refused requests stored %v", got)
	}
	if a := post(t, strings.TrimSuffix(ep.url, "/v1/events")+"/v1/events", "", ""); a.status != 415 {
		t.Errorf("empty POST: %d", a.status)
	}
	req, _ := http.NewRequest(http.MethodGet, ep.url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d Allow %q, want 405 Allow POST", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestTokensAdmitProducersAndBindTheirAccount(t *testing.T) {
	const open, acme = "open-token-0123456789", "acme-token-0123456789"
	ep := start(t, setup{tokens: map[string]string{open: "", acme: "acme"}})
	for _, c := range []struct {
		name, auth string
		status     int
	}{
		{"no token", "", 401},
		{"wrong token", "Bearer wrong-token-0123456789", 401},
		{"token without scheme", open, 401},
		{"basic scheme", "Basic " + open, 401},
		{"lower-case scheme", "bearer " + open, 200},
	} {
		a := post(t, ep.url, "application/json", `{"type":"T"}`, "Authorization", c.auth)
		if a.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, a.status, a.body, c.status)
		}
		if c.status == 401 && !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: 401 without WWW-Authenticate: Bearer", c.name)
		}
	}
	var r ingest.Response
	post(t, ep.url, "application/json", `{"id":"mine","type":"T"}`, "Authorization", "Bearer "+acme).decode(t, &r)
	a := post(t, ep.url, "application/json", `[{"id":"ok","type":"T","account":"acme"},{"id":"theirs","type":"T","account":"globex"}]`, "Authorization", "Bearer "+acme)
	if a.status != http.StatusForbidden || !strings.Contains(a.body, "globex") {
		t.Errorf("event of another account: %d %s, want 403 naming it", a.status, a.body)
	}
	got := storedByID(t, ep.js)
	if got["mine"].Account != "acme" {
		t.Errorf("event posted with acme's token has account %q, want acme", got["mine"].Account)
	}
	if _, ok := got["ok"]; ok {
		t.Error("a refused batch stored some of its events")
	}
}

func TestFullOutboxIsA503WithRetryAfterAndKeepsWhatItHas(t *testing.T) {
	ep := start(t, setup{limits: outbox.Limits{MaxBytes: 16 << 10}})
	one := `{"type":"T","data":"` + strings.Repeat("x", 200) + `"}`
	var a answer
	accepted := 0
	for range 200 {
		if a = post(t, ep.url, "application/json", one); a.status != http.StatusOK {
			break
		}
		accepted++
	}
	if a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, "outbox full") || a.header.Get("Retry-After") == "" {
		t.Fatalf("after %d events: %d %s (Retry-After %q), want 503 outbox full", accepted, a.status, a.body, a.header.Get("Retry-After"))
	}
	a = post(t, ep.url, "application/json", "["+strings.TrimSuffix(strings.Repeat(one+",", 20), ",")+"]")
	var br ingest.BatchResponse
	a.decode(t, &br)
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || br.Failed != 20 {
		t.Errorf("batch into a full outbox: %d Retry-After %q, %d stored %d failed", a.status, a.header.Get("Retry-After"), br.Stored, br.Failed)
	}
	if got := len(testutil.StoredIDs(t, ep.js)); got != accepted {
		t.Errorf("stored %d events, want the %d answered 200", got, accepted)
	}
}

func TestUnreachableOutboxIsA503(t *testing.T) {
	ep := start(t, setup{})
	ep.srv.Shutdown()
	var a answer
	testutil.Eventually(t, 10*time.Second, func() bool {
		a = post(t, ep.url, "application/json", `{"type":"T"}`)
		return a.status == http.StatusServiceUnavailable
	}, "503 once the outbox is gone")
	if a.header.Get("Retry-After") == "" || !strings.Contains(a.body, "unreachable") {
		t.Errorf("%v %s", a.header, a.body)
	}
}

func TestTraceparentContinuesTheProducersTrace(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	ep := start(t, setup{tracer: tp})
	const header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	post(t, ep.url, "application/json", `{"type":"T"}`, "traceparent", header)
	const inEvent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	post(t, ep.url, "application/cloudevents-batch+json", `[{"specversion":"1.0","id":"t1","source":"/s","type":"T","traceparent":"`+inEvent+`"}]`)
	got := map[string]string{}
	for _, s := range spans.GetSpans().Snapshots() {
		got[s.Parent().TraceID().String()] = s.Parent().SpanID().String()
	}
	if got["4bf92f3577b34da6a3ce929d0e0e4736"] != "00f067aa0ba902b7" {
		t.Errorf("emit span of a request with traceparent: parents %v", got)
	}
	if got["0af7651916cd43dd8448eb211c80319c"] != "b7ad6b7169203331" {
		t.Errorf("emit span of a CloudEvent with a traceparent attribute: parents %v", got)
	}
	if _, kept := storedByID(t, ep.js)["t1"]; !kept {
		t.Error("the traced CloudEvent was not stored")
	}
}

// TestAProducerWithoutATokenIsRefusedBeforeItsBody: the 401 comes at
// once for a request that declares a body it never sends.
func TestAProducerWithoutATokenIsRefusedBeforeItsBody(t *testing.T) {
	ep := start(t, setup{tokens: map[string]string{"producer-token-0123456789": ""}})
	c, err := net.Dial("tcp", strings.TrimPrefix(strings.TrimSuffix(ep.url, "/v1/events"), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer before the body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("%d, want 401", resp.StatusCode)
	}
}

package webhook

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/netguard"
	"github.com/courierhq/courier/retry"
)

// fixedNow is the sink's clock in these tests.
var fixedNow = time.Date(2024, 7, 1, 12, 0, 0, 0, time.UTC)

// received is one request a test server got.
type received struct {
	method string
	path   string
	header http.Header
	body   []byte
}

// answer is how a test server responds.
type answer struct {
	status int
	header map[string]string
	body   string
}

// recordingServer starts a real HTTP server that records each request on the
// returned channel and answers with a.
func recordingServer(t *testing.T, a answer) (*httptest.Server, <-chan received) {
	t.Helper()
	got := make(chan received, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("server: read body: %v", err)
		}
		got <- received{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: body}
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// newTestSink returns a sink with a fixed clock, closed at the end of the test.
func newTestSink(t *testing.T, cfg Config, format event.Format) *Sink {
	t.Helper()
	s, err := New(cfg, format, 4, "1.2.3", WithGuard(netguard.NewGuard(netguard.Policy{Allow: netguard.Loopback()})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s.now = func() time.Time { return fixedNow }
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func testEvent() *event.Envelope {
	return &event.Envelope{
		ID:      "0190f5c2-7d3e-7c4a-9a7b-1f2e3d4c5b6a",
		Type:    "VOLUME_CREATE",
		Source:  "glusterd",
		Node:    "gluster-1",
		Time:    time.Date(2024, 7, 1, 11, 59, 58, 0, time.UTC),
		Key:     "gv0",
		Level:   event.LevelInfo,
		StartID: "s1",
		Data:    json.RawMessage(`{"name":"gv0","bricks":3}`),
	}
}

// expectedSignature computes a Standard Webhooks v1 signature independently
// of Sign.
func expectedSignature(t *testing.T, secret, id, ts string, body []byte) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatalf("test secret %q: %v", secret, err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func receive(t *testing.T, got <-chan received) received {
	t.Helper()
	select {
	case r := <-got:
		return r
	default:
		t.Fatal("the server received no request")
		return received{}
	}
}

func asRetryError(t *testing.T, err error) *retry.Error {
	t.Helper()
	if err == nil {
		t.Fatal("Send = nil, want an error")
	}
	var ce *retry.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Send = %T %v, want a *retry.Error", err, err)
	}
	return ce
}

func TestSendSendsStandardWebhooksHeaders(t *testing.T) {
	const rotated = "whsec_" + "cm90YXRlZC1zZWNyZXQ="
	srv, got := recordingServer(t, answer{status: http.StatusOK})
	s := newTestSink(t, Config{
		URL:         srv.URL + "/hooks/gluster?x=1",
		BearerToken: "audit-token",
		Secret:      specSecret,
		Secrets:     []string{rotated},
		Headers:     map[string]string{"X-Cluster": "prod", "X-Tenant": "t-42"},
	}, event.FormatCourier)
	e := testEvent()

	if err := s.Send(context.Background(), e); err != nil {
		t.Fatalf("Send: %v", err)
	}
	r := receive(t, got)
	if r.method != http.MethodPost || r.path != "/hooks/gluster" {
		t.Errorf("request = %s %s, want POST /hooks/gluster", r.method, r.path)
	}
	ts := strconv.FormatInt(fixedNow.Unix(), 10)
	wantHeaders := map[string]string{
		"Content-Type":      "application/json",
		"User-Agent":        "courier/1.2.3",
		"Webhook-Id":        e.ID,
		"Webhook-Timestamp": ts,
		"Authorization":     "Bearer audit-token",
		"X-Cluster":         "prod",
		"X-Tenant":          "t-42",
	}
	for k, want := range wantHeaders {
		if v := r.header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	sigs := strings.Split(r.header.Get("webhook-signature"), " ")
	want := []string{
		expectedSignature(t, specSecret, e.ID, ts, r.body),
		expectedSignature(t, rotated, e.ID, ts, r.body),
	}
	if len(sigs) != 2 || sigs[0] != want[0] || sigs[1] != want[1] {
		t.Errorf("webhook-signature = %q, want %q (one valid signature per secret)", sigs, want)
	}
	wantBody, _, err := event.Encode(event.FormatCourier, e)
	if err != nil {
		t.Fatal(err)
	}
	if string(r.body) != string(wantBody) {
		t.Errorf("body = %s, want %s", r.body, wantBody)
	}
}

func TestSendProtocolHeadersWinOverConfiguredHeaders(t *testing.T) {
	srv, got := recordingServer(t, answer{status: http.StatusNoContent})
	s := newTestSink(t, Config{
		URL:         srv.URL,
		BearerToken: "real-token",
		Secret:      specSecret,
		Headers: map[string]string{
			"Webhook-Id": "spoofed", "Webhook-Timestamp": "1", "Webhook-Signature": "v1,spoofed",
			"Content-Type": "text/plain", "Authorization": "Basic x", "User-Agent": "other",
		},
	}, event.FormatCourier)
	e := testEvent()
	if err := s.Send(context.Background(), e); err != nil {
		t.Fatalf("Send: %v", err)
	}
	r := receive(t, got)
	ts := strconv.FormatInt(fixedNow.Unix(), 10)
	for k, want := range map[string]string{
		"Webhook-Id":        e.ID,
		"Webhook-Timestamp": ts,
		"Webhook-Signature": expectedSignature(t, specSecret, e.ID, ts, r.body),
		"Content-Type":      "application/json",
		"Authorization":     "Bearer real-token",
		"User-Agent":        "courier/1.2.3",
	} {
		if v := r.header.Values(k); len(v) != 1 || v[0] != want {
			t.Errorf("header %s = %q, want only %q", k, v, want)
		}
	}
}

func TestSendWithoutSecretOrTokenSendsNoSignatureOrAuthorization(t *testing.T) {
	srv, got := recordingServer(t, answer{status: http.StatusOK})
	s := newTestSink(t, Config{URL: srv.URL}, event.FormatCourier)
	if err := s.Send(context.Background(), testEvent()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	r := receive(t, got)
	for _, k := range []string{"Webhook-Signature", "Authorization"} {
		if v, ok := r.header[k]; ok {
			t.Errorf("header %s = %q, want it absent", k, v)
		}
	}
	if r.header.Get("Webhook-Id") == "" || r.header.Get("Webhook-Timestamp") == "" {
		t.Error("webhook-id and webhook-timestamp are missing without a secret")
	}
}

func TestSendBodies(t *testing.T) {
	tests := []struct {
		name        string
		format      event.Format
		mode        string
		wantCT      string
		wantBody    string
		wantCE      map[string]string // ce- headers, for binary mode
		checkStruct bool
	}{
		{
			name:     "gluster",
			format:   event.FormatGluster,
			wantCT:   "application/json",
			wantBody: `{"nodeid":"gluster-1","ts":1719835198,"event":"VOLUME_CREATE","message":{"name":"gv0","bricks":3}}`,
		},
		{
			name:        "cloudevents structured",
			format:      event.FormatCloudEvents,
			wantCT:      "application/cloudevents+json",
			checkStruct: true,
		},
		{
			name:     "cloudevents binary",
			format:   event.FormatCloudEvents,
			mode:     "binary",
			wantCT:   "application/json",
			wantBody: `{"name":"gv0","bricks":3}`,
			wantCE: map[string]string{
				"Ce-Specversion": "1.0",
				"Ce-Id":          "0190f5c2-7d3e-7c4a-9a7b-1f2e3d4c5b6a",
				"Ce-Source":      "glusterd",
				"Ce-Type":        "VOLUME_CREATE",
				"Ce-Time":        "2024-07-01T11:59:58Z",
				"Ce-Subject":     "gv0",
				"Ce-Level":       "INFO",
				"Ce-Startid":     "s1",
				"Ce-Node":        "gluster-1",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, got := recordingServer(t, answer{status: http.StatusAccepted})
			s := newTestSink(t, Config{URL: srv.URL, Secret: specSecret, CloudEventsMode: tt.mode}, tt.format)
			e := testEvent()
			if err := s.Send(context.Background(), e); err != nil {
				t.Fatalf("Send: %v", err)
			}
			r := receive(t, got)
			if ct := r.header.Get("Content-Type"); ct != tt.wantCT {
				t.Errorf("Content-Type = %q, want %q", ct, tt.wantCT)
			}
			if tt.wantBody != "" && string(r.body) != tt.wantBody {
				t.Errorf("body = %s, want %s", r.body, tt.wantBody)
			}
			if tt.checkStruct {
				var ce map[string]any
				if err := json.Unmarshal(r.body, &ce); err != nil {
					t.Fatalf("body is not JSON: %v", err)
				}
				if ce["specversion"] != "1.0" || ce["id"] != e.ID || ce["type"] != e.Type || ce["source"] != e.Source {
					t.Errorf("structured body = %s, want a CloudEvent with the event's attributes", r.body)
				}
			}
			var ceHeaders []string
			for k := range r.header {
				if strings.HasPrefix(k, "Ce-") {
					ceHeaders = append(ceHeaders, k)
				}
			}
			if len(ceHeaders) != len(tt.wantCE) {
				t.Errorf("ce- headers = %q, want %d of them", ceHeaders, len(tt.wantCE))
			}
			for k, want := range tt.wantCE {
				if v := r.header.Get(k); v != want {
					t.Errorf("header %s = %q, want %q", k, v, want)
				}
			}
			ts := r.header.Get("Webhook-Timestamp")
			if sig := r.header.Get("Webhook-Signature"); sig != expectedSignature(t, specSecret, e.ID, ts, r.body) {
				t.Errorf("webhook-signature %q does not verify against the body sent", sig)
			}
		})
	}
}

func TestSendOutcomes(t *testing.T) {
	tests := []struct {
		name           string
		answer         answer
		wantNil        bool
		wantKind       retry.Kind
		wantRetryAfter time.Duration
		wantResponse   string
	}{
		{name: "200 is delivered", answer: answer{status: 200, body: "ok"}, wantNil: true},
		{name: "201 is delivered", answer: answer{status: 201}, wantNil: true},
		{name: "202 is delivered", answer: answer{status: 202}, wantNil: true},
		{name: "204 is delivered", answer: answer{status: 204}, wantNil: true},
		{
			name:     "503 with Retry-After in seconds is retryable after that delay",
			answer:   answer{status: 503, header: map[string]string{"Retry-After": "7"}, body: "maintenance"},
			wantKind: retry.Retryable, wantRetryAfter: 7 * time.Second, wantResponse: "maintenance",
		},
		{
			name: "429 with Retry-After as a date is retryable after that delay",
			answer: answer{status: 429, header: map[string]string{
				"Retry-After": fixedNow.Add(2 * time.Minute).Format(http.TimeFormat)}},
			wantKind: retry.Retryable, wantRetryAfter: 2 * time.Minute,
		},
		{
			name:     "503 without Retry-After is retryable",
			answer:   answer{status: 503},
			wantKind: retry.Retryable,
		},
		{
			name:     "500 is retryable and its Retry-After is not used",
			answer:   answer{status: 500, header: map[string]string{"Retry-After": "30"}, body: "oops"},
			wantKind: retry.Retryable, wantResponse: "oops",
		},
		{name: "502 is retryable", answer: answer{status: 502}, wantKind: retry.Retryable},
		{name: "408 is retryable", answer: answer{status: 408}, wantKind: retry.Retryable},
		{
			name:     "400 is permanent with the response excerpt",
			answer:   answer{status: 400, body: `{"error":"missing field volume"}`},
			wantKind: retry.Permanent, wantResponse: `{"error":"missing field volume"}`,
		},
		{name: "401 is permanent", answer: answer{status: 401, body: "bad token"}, wantKind: retry.Permanent, wantResponse: "bad token"},
		{name: "404 is permanent", answer: answer{status: 404}, wantKind: retry.Permanent},
		{name: "410 is permanent", answer: answer{status: 410}, wantKind: retry.Permanent},
		{
			name:     "400 with Retry-After is permanent with no delay",
			answer:   answer{status: 400, header: map[string]string{"Retry-After": "7"}},
			wantKind: retry.Permanent,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, got := recordingServer(t, tt.answer)
			s := newTestSink(t, Config{URL: srv.URL}, event.FormatGluster)
			err := s.Send(context.Background(), testEvent())
			receive(t, got)
			if tt.wantNil {
				if err != nil {
					t.Fatalf("Send = %v, want nil", err)
				}
				return
			}
			ce := asRetryError(t, err)
			if ce.Kind != tt.wantKind {
				t.Errorf("Kind = %s, want %s", ce.Kind, tt.wantKind)
			}
			if ce.Status != tt.answer.status {
				t.Errorf("Status = %d, want %d", ce.Status, tt.answer.status)
			}
			if ce.RetryAfter != tt.wantRetryAfter {
				t.Errorf("RetryAfter = %s, want %s", ce.RetryAfter, tt.wantRetryAfter)
			}
			if ce.Response != tt.wantResponse {
				t.Errorf("Response = %q, want %q", ce.Response, tt.wantResponse)
			}
			if !strings.Contains(err.Error(), strconv.Itoa(tt.answer.status)) {
				t.Errorf("error %q does not mention the status", err)
			}
			if got := retry.Classify(fmt.Errorf("wrapped: %w", err)); got != ce {
				t.Errorf("Classify of the wrapped error = %v, want the sink's classification", got)
			}
		})
	}
}

func TestSendDoesNotFollowRedirects(t *testing.T) {
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			var redirected atomic.Int32
			mux := http.NewServeMux()
			mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", "/elsewhere")
				w.WriteHeader(code)
				_, _ = io.WriteString(w, "moved")
			})
			mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
				redirected.Add(1)
			})
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			s := newTestSink(t, Config{URL: srv.URL + "/hook"}, event.FormatCourier)

			ce := asRetryError(t, s.Send(context.Background(), testEvent()))
			if ce.Kind != retry.Permanent || ce.Status != code {
				t.Errorf("Send = %s with status %d, want permanent with status %d", ce.Kind, ce.Status, code)
			}
			if ce.Response != "moved" {
				t.Errorf("Response = %q, want the redirect's body", ce.Response)
			}
			if n := redirected.Load(); n != 0 {
				t.Errorf("the redirect target got %d requests, want none", n)
			}
		})
	}
}

func TestSendTimeoutIsRetryable(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Answer only when the test ends (or the client gives up).
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	s := newTestSink(t, Config{URL: srv.URL, Timeout: 50 * time.Millisecond}, event.FormatCourier)

	start := time.Now()
	err := s.Send(context.Background(), testEvent())
	ce := asRetryError(t, err)
	if ce.Kind != retry.Retryable {
		t.Errorf("Kind = %s, want retryable", ce.Kind)
	}
	var ne interface{ Timeout() bool }
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("error %v is not a timeout", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Send returned after %s, want about the 50ms timeout", elapsed)
	}
}

func TestSendTimeoutCoversASlowResponseBody(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	s := newTestSink(t, Config{URL: srv.URL, Timeout: 50 * time.Millisecond}, event.FormatCourier)

	ce := asRetryError(t, s.Send(context.Background(), testEvent()))
	if ce.Kind != retry.Retryable || ce.Status != http.StatusServiceUnavailable {
		t.Errorf("Send = %s status %d, want retryable 503", ce.Kind, ce.Status)
	}
	if ce.Response != "partial" {
		t.Errorf("Response = %q, want what arrived before the timeout", ce.Response)
	}
}

func TestSendCancelledContextIsRetryable(t *testing.T) {
	srv, _ := recordingServer(t, answer{status: http.StatusOK})
	s := newTestSink(t, Config{URL: srv.URL}, event.FormatCourier)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Send(ctx, testEvent())
	ce := asRetryError(t, err)
	if ce.Kind != retry.Retryable {
		t.Errorf("Kind = %s, want retryable (the event was not refused)", ce.Kind)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not wrap context.Canceled", err)
	}
}

func TestSendConnectionRefusedIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	s := newTestSink(t, Config{URL: u}, event.FormatCourier)
	ce := asRetryError(t, s.Send(context.Background(), testEvent()))
	if ce.Kind != retry.Retryable || ce.Status != 0 {
		t.Errorf("Send = %s status %d, want retryable without status", ce.Kind, ce.Status)
	}
}

func TestSendResponseExcerptIsCapped(t *testing.T) {
	long := strings.Repeat("0123456789", 1000) // 10000 bytes
	tests := []struct {
		name             string
		maxResponseBytes int64
		want             string
	}{
		{"default limit keeps 512 bytes", 0, long[:512]},
		{"a lower read limit caps the excerpt further", 100, long[:100]},
		{"a high read limit still keeps 512 bytes", 1 << 20, long[:512]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := recordingServer(t, answer{status: 400, body: long})
			s := newTestSink(t, Config{URL: srv.URL, MaxResponseBytes: tt.maxResponseBytes}, event.FormatCourier)
			ce := asRetryError(t, s.Send(context.Background(), testEvent()))
			if ce.Response != tt.want {
				t.Errorf("Response has %d bytes (%.20q...), want %d bytes", len(ce.Response), ce.Response, len(tt.want))
			}
		})
	}
}

func TestSendReusesConnections(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, strings.Repeat("x", 2048)) // longer than the excerpt
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	s := newTestSink(t, Config{URL: srv.URL}, event.FormatCourier)
	for range 5 {
		if err := s.Send(context.Background(), testEvent()); err == nil {
			t.Fatal("Send = nil, want the 400")
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("5 sequential sends opened %d connections, want 1 (the response is read so the connection is reused)", n)
	}
}

func TestNewRejectsInvalidConfigs(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"missing URL", Config{}, "url"},
		{"relative URL", Config{URL: "/hook"}, "url"},
		{"URL without host", Config{URL: "http:///hook"}, "url"},
		{"URL with another scheme", Config{URL: "ftp://example.com/"}, "url"},
		{"unparsable URL", Config{URL: "http://exa mple.com/"}, "url"},
		{"negative timeout", Config{URL: "https://example.com/", Timeout: -time.Second}, "timeout"},
		{"unknown cloudevents mode", Config{URL: "https://example.com/", CloudEventsMode: "batched"}, "cloudevents_mode"},
		{"bad secret", Config{URL: "https://example.com/", Secret: "whsec_???"}, "secret #1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.cfg, event.FormatCourier, 1, "test")
			if err == nil {
				_ = s.Close(context.Background())
				t.Fatal("New = nil error, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %s", err, tt.want)
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	got := Config{URL: "https://example.com/"}.WithDefaults()
	if got.Timeout != 15*time.Second || got.MaxResponseBytes != 64<<10 || got.CloudEventsMode != "structured" {
		t.Errorf("WithDefaults = %+v, want timeout 15s, max response 64KiB, structured", got)
	}
	set := Config{URL: "https://example.com/", Timeout: time.Second, MaxResponseBytes: 10, CloudEventsMode: "binary"}
	if got := set.WithDefaults(); got.Timeout != time.Second || got.MaxResponseBytes != 10 || got.CloudEventsMode != "binary" {
		t.Errorf("WithDefaults changed set fields: %+v", got)
	}
}

func TestSendCloudEventsBinaryPercentEncodesHeaderValues(t *testing.T) {
	srv, got := recordingServer(t, answer{status: http.StatusOK})
	s := newTestSink(t, Config{URL: srv.URL, CloudEventsMode: "binary"}, event.FormatCloudEvents)
	for _, key := range []string{"données 100%", "line1\nline2"} {
		e := testEvent()
		e.Key = key
		if err := s.Send(context.Background(), e); err != nil {
			t.Errorf("Send with subject %q: %v", key, err)
			continue
		}
		v := receive(t, got).header.Get("Ce-Subject")
		for _, c := range []byte(v) {
			if c < 0x21 || c > 0x7e {
				t.Errorf("ce-subject %q has the byte %#x, want printable ASCII only", v, c)
				break
			}
		}
		if dec, err := url.PathUnescape(v); err != nil || dec != key {
			t.Errorf("ce-subject %q percent-decodes to %q (%v), want %q", v, dec, err, key)
		}
	}
}

func TestNewRejectsHeadersThatCannotBeSent(t *testing.T) {
	for _, h := range []map[string]string{{"X Tenant": "a"}, {"X-Tenant": "a\nb"}, {"": "a"}} {
		s, err := New(Config{URL: "https://example.com/", Headers: h}, event.FormatCourier, 1, "test")
		if err == nil {
			_ = s.Close(context.Background())
			t.Errorf("New accepted the headers %q", h)
		}
	}
}

// TestAReceiverOnAnAddressNotAllowedIsAPermanentFailure: by default a
// webhook reaches public addresses only; "localhost" resolves to loopback,
// so the attempt fails as permanent, saying why, and nothing reaches it.
func TestAReceiverOnAnAddressNotAllowedIsAPermanentFailure(t *testing.T) {
	srv, got := recordingServer(t, answer{status: http.StatusOK})
	local := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	s, err := New(Config{URL: local + "/hook"}, event.FormatCourier, 1, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	err = s.Send(context.Background(), testEvent())
	ce := retry.Classify(err)
	if ce.Kind != retry.Permanent || !strings.Contains(err.Error(), "destination not allowed") || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("send to localhost: %v (%s), want a permanent 'destination not allowed' naming loopback", err, ce.Kind)
	}
	if n := len(got); n != 0 {
		t.Errorf("the receiver got %d requests", n)
	}
}

// loopbackSink is a sink to url that may reach this machine.
func loopbackSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg, event.FormatCourier, 1, "test", WithGuard(netguard.NewGuard(netguard.Policy{Allow: netguard.Loopback()})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// TestAPeerThatIsNotHTTPLeavesNothingOfItsAnswer: a webhook pointed at a
// NATS-like port gets its INFO line back; nothing of it may reach the
// error kept in attempts, dead letters and status.
func TestAPeerThatIsNotHTTPLeavesNothingOfItsAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, `INFO {"server_id":"NDSECRETSERVERID","xkey":"XSECRETKEY","version":"2.15.2"}`+"\r\n")
			c.Close()
		}
	}()
	s := loopbackSink(t, Config{URL: "http://" + ln.Addr().String() + "/hook", Timeout: 5 * time.Second})
	err = s.Send(context.Background(), testEvent())
	if err == nil {
		t.Fatal("a NATS port accepted a webhook")
	}
	ce := retry.Classify(err)
	for _, leak := range []string{"SECRETSERVERID", "XSECRETKEY", "INFO"} {
		if strings.Contains(err.Error(), leak) || strings.Contains(ce.Response, leak) {
			t.Errorf("the error keeps %q of the peer's answer: %v / %q", leak, err, ce.Response)
		}
	}
}

func TestResponseExcerptsAreShortPrintableText(t *testing.T) {
	body := append([]byte("bad \x00\x1b[31m red \xff\xfe "), bytes.Repeat([]byte("é"), 600)...)
	got := Excerpt(body, 512)
	if len(got) > 512 || !utf8.ValidString(got) || strings.ContainsAny(got, "\x00\x1b") {
		t.Errorf("excerpt %q (%d bytes)", got, len(got))
	}
	if !strings.HasPrefix(got, "bad ??[31m red ?") {
		t.Errorf("excerpt starts %q", got[:20])
	}
	if got := Excerpt([]byte("line 1\nline\t2"), 512); got != "line 1\nline\t2" {
		t.Errorf("newline and tab changed: %q", got)
	}
}

// TestAHugeGzipBodyCostsBoundedMemory: a receiver answering 400 with a
// body that inflates to 1 GiB: the sink reads max_response_bytes of it.
func TestAHugeGzipBodyCostsBoundedMemory(t *testing.T) {
	var member bytes.Buffer
	zw := gzip.NewWriter(&member)
	_, _ = zw.Write(make([]byte, 1<<20))
	_ = zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusBadRequest)
		// 1024 gzip members of 1 MiB of zeros each: one 1 GiB stream.
		for range 1024 {
			if _, err := w.Write(member.Bytes()); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	s := loopbackSink(t, Config{URL: srv.URL, Timeout: 30 * time.Second})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := s.Send(context.Background(), testEvent())
	runtime.ReadMemStats(&after)
	if ce := retry.Classify(err); ce.Status != http.StatusBadRequest || len(ce.Response) > excerptBytes {
		t.Errorf("err = %v, response %d bytes", err, len(ce.Response))
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("reading the answer allocated %d MiB", grew>>20)
	}
}

// TestATricklingReceiverCostsBoundedTime: headers, then a byte a second:
// the sink's timeout bounds the whole exchange.
func TestATricklingReceiverCostsBoundedTime(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		for {
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-stop:
				return
			case <-time.After(time.Second): // the receiver's pace, not synchronisation
			}
		}
	}))
	t.Cleanup(func() { close(stop); srv.Close() })
	s := loopbackSink(t, Config{URL: srv.URL, Timeout: 500 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- s.Send(context.Background(), testEvent()) }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a 502 counted as delivered")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a trickling receiver held the send past its timeout")
	}
}

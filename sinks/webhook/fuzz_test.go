package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/courierhq/courier/internal/netguard"
	"github.com/courierhq/courier/retry"
)

// FuzzResponse answers a delivery with any status, Retry-After and body:
// a 2xx is delivered, anything else is a failure whose excerpt is short
// printable text, whose wait is bounded, and nothing panics.
func FuzzResponse(f *testing.F) {
	for _, s := range []struct {
		status     int
		retryAfter string
		body       []byte
	}{
		{200, "", nil},
		{204, "", []byte("ok")},
		{503, "120", []byte("busy")},
		{429, "Wed, 02 Dec 2026 10:05:00 GMT", []byte(`{"error":"slow down"}`)},
		{410, "", []byte("gone")},
		{400, "", []byte("\x00\x1b[31m\xff\xfe binary")},
		{302, "", nil},
		{599, "-1", []byte(strings.Repeat("é", 700))},
	} {
		f.Add(s.status, s.retryAfter, s.body)
	}
	var (
		mu   sync.Mutex
		next struct {
			status     int
			retryAfter string
			body       []byte
		}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n := next
		mu.Unlock()
		if n.retryAfter != "" {
			w.Header()["Retry-After"] = []string{n.retryAfter}
		}
		w.WriteHeader(n.status)
		_, _ = w.Write(n.body)
	}))
	defer srv.Close()
	s, err := New(Config{URL: srv.URL, Timeout: 5 * time.Second}, "", 2, "fuzz", WithGuard(netguard.NewGuard(netguard.Policy{Allow: netguard.Loopback()})))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte) {
		if status < 200 || status > 599 {
			return // net/http refuses to write these
		}
		if strings.ContainsFunc(retryAfter, func(r rune) bool { return r < 0x20 || r == 0x7f }) || !utf8.ValidString(retryAfter) {
			return // a header no HTTP server sends (the client rightly refuses the answer)
		}
		mu.Lock()
		next.status, next.retryAfter, next.body = status, retryAfter, body
		mu.Unlock()
		err := s.Send(context.Background(), testEvent())
		if status < 300 {
			if err != nil {
				t.Fatalf("status %d: %v", status, err)
			}
			return
		}
		if err == nil {
			t.Fatalf("status %d counted as delivered", status)
		}
		ce := retry.Classify(err)
		if len(ce.Response) > excerptBytes || !utf8.ValidString(ce.Response) {
			t.Fatalf("excerpt of %d bytes, valid UTF-8 %v", len(ce.Response), utf8.ValidString(ce.Response))
		}
		if ce.RetryAfter < 0 || ce.RetryAfter > 366*24*time.Hour {
			t.Fatalf("Retry-After %q gave %s", retryAfter, ce.RetryAfter)
		}
	})
}

package worker_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/courierhq/courier/internal/httpserve"
	"github.com/courierhq/courier/internal/testutil"
)

// TestAnUnauthenticatedRequestIsAnsweredBeforeItsBody: a POST without a
// token that declares a large body and sends none is answered 401 at once
// (the body is never waited for), on every authenticated path.
func TestAnUnauthenticatedRequestIsAnsweredBeforeItsBody(t *testing.T) {
	n := testutil.StartNode(t, "admin:\n  token: 0123456789abcdef-test-token\n  account_tokens: {acme: acme-token-0123456789}\n", nil)
	s, err := httpserve.Listen("127.0.0.1:0", n.AdminHandler(), httpserve.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Serve()
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	for _, path := range []string{"/v1/sinks", "/v1/events/archive", "/v1/config/concurrency"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(s.URL(), "http://"))
		if err != nil {
			t.Fatal(err)
		}
		method := "POST"
		if strings.HasPrefix(path, "/v1/config") {
			method = "PUT"
		}
		if _, err := c.Write([]byte(method + " " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Errorf("%s: no answer before the body: %v", path, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", path, resp.StatusCode)
		}
	}
}

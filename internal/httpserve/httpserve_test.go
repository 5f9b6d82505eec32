package httpserve_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/courierhq/courier/internal/httpserve"
	"github.com/courierhq/courier/internal/testutil"
)

func serve(t *testing.T, o httpserve.Options) *httpserve.Server {
	t.Helper()
	h := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		io.WriteString(rw, "ok")
	})
	s, err := httpserve.Listen("127.0.0.1:0", h, o)
	if err != nil {
		t.Fatal(err)
	}
	s.Serve()
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s
}

func TestTLSListenerServesHTTPSOnly(t *testing.T) {
	files := testutil.NewTLSFiles(t)
	pem, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	s := serve(t, httpserve.Options{CertFile: files.Cert, KeyFile: files.Key})
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("URL %s, want https", s.URL())
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d", resp.StatusCode)
	}
	resp, err = http.Get("http://" + strings.TrimPrefix(s.URL(), "https://"))
	if err == nil {
		// Go's server answers plain HTTP on a TLS port with a 400.
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP on the TLS port: %d", resp.StatusCode)
		}
	}
}

func TestBadCertificateFailsAtListen(t *testing.T) {
	_, err := httpserve.Listen("127.0.0.1:0", http.NotFoundHandler(), httpserve.Options{CertFile: "/nonexistent.pem", KeyFile: "/nonexistent.key"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent.pem") {
		t.Errorf("err = %v, want one naming the certificate file", err)
	}
}

// closedWithin reports whether the server ends the connection (EOF or a
// reset) before the deadline, after answering or not.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) bool {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func TestAClientThatSendsNothingIsNotHeld(t *testing.T) {
	s := serve(t, httpserve.Options{ReadTimeout: 200 * time.Millisecond, IdleTimeout: 200 * time.Millisecond})
	addr := strings.TrimPrefix(s.URL(), "http://")

	// Declares a body and never sends it.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	if !closedWithin(t, c, 10*time.Second) {
		t.Error("a request whose body never comes held its connection past ReadTimeout")
	}

	// Keeps an idle keep-alive connection open after one request.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	io.WriteString(c2, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !closedWithin(t, c2, 10*time.Second) {
		t.Error("an idle keep-alive connection stayed open past IdleTimeout")
	}
}

// TestConnectionsOverTheCapWaitToBeAccepted: with MaxConns 1, a second
// client is served only once the first connection is gone.
func TestConnectionsOverTheCapWaitToBeAccepted(t *testing.T) {
	s := serve(t, httpserve.Options{MaxConns: 1})
	addr := strings.TrimPrefix(s.URL(), "http://")
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(first, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(first), nil); err != nil {
		t.Fatal(err)
	}
	// first stays open (keep-alive) and holds the only slot.
	answered := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Get(s.URL())
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("a second connection was served while the first held the only slot (err %v)", err)
	case <-time.After(300 * time.Millisecond): // a bound on a negative: nothing must happen
	}
	first.Close()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("second client after the first left: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the second client was not served after the first connection closed")
	}
}

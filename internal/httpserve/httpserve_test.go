package httpserve_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/courierhq/courier/internal/httpserve"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "courier test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

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
	certFile, keyFile, pool := selfSigned(t)
	s := serve(t, httpserve.Options{CertFile: certFile, KeyFile: keyFile})
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

package outbox_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
)

var (
	worker   = outbox.Credentials{User: "courier", Password: "worker-password-0123"}
	producer = outbox.AuthUser{User: "app", Password: "producer-password-0123", Producer: true}
)

// startAuthOutbox starts an embedded outbox that admits the worker, the
// producer and an nkey producer, with TLS when files are given.
func startAuthOutbox(t *testing.T, tlsFiles outbox.TLSFiles, extra ...outbox.AuthUser) *outbox.Server {
	t.Helper()
	self := worker
	self.CAFile = tlsFiles.CAFile
	users := append([]outbox.AuthUser{{User: worker.User, Password: worker.Password}, producer}, extra...)
	srv, _ := testutil.StartAuthOutbox(t, users, self, tlsFiles)
	return srv
}

func connect(t *testing.T, url string, opts ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	nc, err := nats.Connect(url, append(opts, nats.Timeout(5*time.Second), nats.MaxReconnects(0))...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

func TestTheOutboxAdmitsOnlyItsUsers(t *testing.T) {
	srv := startAuthOutbox(t, outbox.TLSFiles{})
	for name, opts := range map[string][]nats.Option{
		"no credentials": nil,
		"wrong password": {nats.UserInfo(worker.User, "wrong")},
		"unknown user":   {nats.UserInfo("mallory", "x")},
	} {
		if _, err := connect(t, srv.ClientURL(), opts...); !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("%s: %v, want an authorization violation", name, err)
		}
	}
	if _, err := connect(t, srv.ClientURL(), nats.UserInfo(worker.User, worker.Password)); err != nil {
		t.Errorf("the worker's credentials: %v", err)
	}
}

// TestAProducerMayOnlyEmit: a producer credential stores events, but
// cannot read them, the JetStream API or the buckets (a real NATS client
// tries each).
func TestAProducerMayOnlyEmit(t *testing.T) {
	srv := startAuthOutbox(t, outbox.TLSFiles{})
	pub, err := outbox.Dial(context.Background(), srv.ClientURL(), 5*time.Second,
		outbox.WithCredentials(outbox.Credentials{User: producer.User, Password: producer.Password}))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := range 20 { // enough to go as one atomic batch too
		if _, err := pub.EmitAsync(context.Background(), event.Envelope{Type: "VOLUME_CREATE"}); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
	}
	if _, err := pub.Emit(context.Background(), event.Envelope{Type: "VOLUME_CREATE"}); err != nil {
		t.Fatalf("a producer could not emit: %v", err)
	}

	violations := make(chan error, 10)
	nc, err := connect(t, srv.ClientURL(), nats.UserInfo(producer.User, producer.Password),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.SubscribeSync(outbox.EventSubject("VOLUME_CREATE")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-violations:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("subscribe to events: %v, want a permissions violation", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("a producer subscribed to the events without a permissions violation")
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := js.Stream(ctx, outbox.StreamEvents); err == nil {
		t.Error("a producer read the outbox stream's info")
	}
	if _, err := js.KeyValue(ctx, outbox.BucketSinks); err == nil {
		t.Error("a producer opened the sinks bucket")
	}
}

func TestAProducerMayUseAnNkey(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pubKey, _ := kp.PublicKey()
	seedFile := filepath.Join(t.TempDir(), "producer.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startAuthOutbox(t, outbox.TLSFiles{}, outbox.AuthUser{Nkey: pubKey, Producer: true})
	creds, err := outbox.LoadCredentials(seedFile)
	if err != nil || creds.NkeySeedFile != seedFile {
		t.Fatalf("LoadCredentials of a seed: %+v %v", creds, err)
	}
	pub, err := outbox.Dial(context.Background(), srv.ClientURL(), 5*time.Second, outbox.WithCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if _, err := pub.Emit(context.Background(), event.Envelope{Type: "T"}); err != nil {
		t.Errorf("emit with an nkey: %v", err)
	}
}

func TestTheClientPortServesTLS(t *testing.T) {
	files := testutil.NewTLSFiles(t)
	srv := startAuthOutbox(t, outbox.TLSFiles{CertFile: files.Cert, KeyFile: files.Key})
	auth := nats.UserInfo(worker.User, worker.Password)
	if _, err := connect(t, srv.ClientURL(), auth); err == nil {
		t.Error("connected without trusting the server's CA")
	}
	if _, err := connect(t, srv.ClientURL(), auth, nats.RootCAs(files.OtherCA)); err == nil {
		t.Error("connected trusting another CA")
	}
	if _, err := connect(t, srv.ClientURL(), auth, nats.RootCAs(files.CA)); err != nil {
		t.Errorf("with the CA: %v", err)
	}
}

// TestRoutesRefuseServersWithoutCredentials speaks the route protocol to a
// cluster port that requires credentials: the server refuses the CONNECT.
func TestRoutesRefuseServersWithoutCredentials(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	routeAddr := testutil.FreeAddr(t)
	srv, err := outbox.StartServer(ctx, outbox.ServerConfig{
		Name: "r1", Listen: "127.0.0.1:0", DataDir: t.TempDir(), SyncAlways: true,
		Cluster: outbox.ClusterConfig{Name: "c", Listen: routeAddr, Routes: []string{"nats-route://" + routeAddr}, User: "route", Password: "route-password-0123"},
	}, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	for name, connect := range map[string]string{
		"no credentials": `CONNECT {"verbose":false,"pedantic":false,"name":"intruder"}`,
		"wrong password": `CONNECT {"verbose":false,"pedantic":false,"user":"route","pass":"guess","name":"intruder"}`,
	} {
		c, err := net.DialTimeout("tcp", routeAddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "INFO") {
			t.Fatalf("route port greeting: %q %v", line, err)
		}
		if _, err := c.Write([]byte(connect + "\r\nPING\r\n")); err != nil {
			t.Fatal(err)
		}
		var got strings.Builder
		for {
			line, err := r.ReadString('\n')
			got.WriteString(line)
			if err != nil || strings.HasPrefix(line, "-ERR") || strings.HasPrefix(line, "PONG") {
				break
			}
		}
		c.Close()
		if !strings.Contains(got.String(), "Authorization Violation") {
			t.Errorf("%s: the route port answered %q, want an authorization violation", name, got.String())
		}
	}
}

// TestRoutesWithMutualTLSRefuseAStrangersCertificate: a route port with
// cluster TLS completes the handshake with a certificate from the
// cluster's CA and refuses one from another CA.
func TestRoutesWithMutualTLSRefuseAStrangersCertificate(t *testing.T) {
	files := testutil.NewTLSFiles(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	routeAddr := testutil.FreeAddr(t)
	srv, err := outbox.StartServer(ctx, outbox.ServerConfig{
		Name: "m1", Listen: "127.0.0.1:0", DataDir: t.TempDir(), SyncAlways: true,
		Cluster: outbox.ClusterConfig{Name: "c", Listen: routeAddr, Routes: []string{"nats-route://" + routeAddr},
			TLS: outbox.TLSFiles{CertFile: files.Cert, KeyFile: files.Key, CAFile: files.CA}},
	}, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(files.CA)
	pool.AppendCertsFromPEM(pem)
	handshake := func(certFile, keyFile string) error {
		c, err := net.DialTimeout("tcp", routeAddr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		// Routes with TLS start with the handshake (the INFO comes
		// inside it).
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(c, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "127.0.0.1"})
		if err := tc.Handshake(); err != nil {
			return err
		}
		// TLS 1.3 reports a refused client certificate on the first read.
		line, err := bufio.NewReader(tc).ReadString('\n')
		if err == nil && !strings.HasPrefix(line, "INFO") {
			return fmt.Errorf("the route port said %q", line)
		}
		return err
	}
	if err := handshake(files.OtherCert, files.OtherKey); err == nil {
		t.Error("a certificate from another CA was answered, want the connection refused")
	}
	if err := handshake(files.Cert, files.Key); err != nil {
		t.Errorf("the cluster's own certificate: %v", err)
	}
}

// Package testutil starts the real components Courier's tests run against
// (embedded JetStream, worker nodes, HTTP receivers) and waits on conditions
// with deadlines instead of sleeping.
package testutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/sinks"
	"github.com/courierhq/courier/sinks/builtin"
	"github.com/courierhq/courier/worker"
)

// Eventually polls cond until it holds or the deadline passes, then fails
// the test with the message.
func Eventually(t testing.TB, within time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not true within %s: %s", within, fmt.Sprintf(format, args...))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Logger returns a logger that writes to the test log when -v is given and
// discards otherwise.
func Logger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Delivery is one request a Receiver got.
type Delivery struct {
	ID     string
	Body   []byte
	Header http.Header
	At     time.Time
}

// Answer decides a Receiver's response to a delivery; seen counts the
// requests with that webhook-id so far, this one included.
type Answer func(d Delivery, seen int) (status int, header http.Header)

// Receiver is a real HTTP server that records webhook deliveries.
type Receiver struct {
	*httptest.Server
	mu     sync.Mutex
	all    []Delivery
	seen   map[string]int
	answer Answer
}

// NewReceiver starts a receiver that answers 200 until told otherwise.
func NewReceiver(t testing.TB) *Receiver {
	r := &Receiver{seen: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

// URL of the receiver's endpoint.
func (r *Receiver) URL() string { return r.Server.URL + "/listen" }

// Answer sets how the receiver responds.
func (r *Receiver) Answer(a Answer) {
	r.mu.Lock()
	r.answer = a
	r.mu.Unlock()
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	d := Delivery{ID: req.Header.Get("webhook-id"), Body: body, Header: req.Header.Clone(), At: time.Now()}
	r.mu.Lock()
	r.seen[d.ID]++
	seen, answer := r.seen[d.ID], r.answer
	r.all = append(r.all, d)
	r.mu.Unlock()
	status := http.StatusOK
	if answer != nil {
		var h http.Header
		status, h = answer(d, seen)
		for k, v := range h {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, "status %d", status)
}

// Requests returns every request so far, in arrival order.
func (r *Receiver) Requests() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.all...)
}

// Seen returns how many requests carried the id.
func (r *Receiver) Seen(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[id]
}

// Distinct returns how many distinct ids arrived.
func (r *Receiver) Distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// Node is an in-process worker with an embedded outbox in a temporary
// directory, listening on a free port.
type Node struct {
	*worker.Worker
	Config *config.File
}

// StartNode parses the YAML configuration (with ${VAR} taken from vars),
// points it at a fresh data directory and a free port, and starts it.
// The node is shut down when the test ends.
func StartNode(t testing.TB, yaml string, vars map[string]string, opts ...worker.Option) *Node {
	t.Helper()
	return StartNodeOfKinds(t, yaml, vars, builtin.Kinds(), opts...)
}

// StartNodeOfKinds is StartNode with sinks of kinds.
func StartNodeOfKinds(t testing.TB, yaml string, vars map[string]string, kinds sinks.Kinds, opts ...worker.Option) *Node {
	t.Helper()
	if !strings.Contains(yaml, "webhook_allow:") {
		// The tests' receivers listen on loopback, which webhooks may not
		// reach unless allowed.
		yaml = "webhook_allow: [127.0.0.0/8, \"::1/128\"]\n" + yaml
	}
	cfg, err := config.Parse([]byte(yaml), func(k string) (string, bool) { v, ok := vars[k]; return v, ok }, kinds)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	// Parse put the default spool under the default data_dir, ./data:
	// it moves with data_dir.
	defaultSpool := cfg.SpoolDir == filepath.Join(cfg.DataDir, "spool")
	cfg.DataDir = t.TempDir()
	if defaultSpool {
		cfg.SpoolDir = filepath.Join(cfg.DataDir, "spool")
	}
	cfg.Outbox.Listen = "127.0.0.1:0"
	return StartConfig(t, cfg, opts...)
}

// StartConfig starts a node from a ready configuration.
func StartConfig(t testing.TB, cfg *config.File, opts ...worker.Option) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := worker.Start(ctx, cfg, "test", Logger(t), append([]worker.Option{worker.WithExpiryCheck(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(func() { w.Shutdown(context.Background()) })
	return &Node{Worker: w, Config: cfg}
}

// Publisher connects a producer to the node's outbox.
func (n *Node) Publisher(t testing.TB, opts ...outbox.PublisherOption) *outbox.Publisher {
	t.Helper()
	p, err := outbox.Dial(context.Background(), n.URL(), 5*time.Second, opts...)
	if err != nil {
		t.Fatalf("dial outbox: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// StartOutbox starts a bare embedded outbox (no worker) with fsync before
// every acknowledgement, sets up its streams with the given limits and
// returns a JetStream handle on it.
func StartOutbox(t testing.TB, limits outbox.Limits) (*outbox.Server, jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := outbox.StartServer(ctx, outbox.ServerConfig{
		Name: "test", Listen: "127.0.0.1:0", DataDir: t.TempDir(), SyncAlways: true,
	}, Logger(t))
	if err != nil {
		t.Fatalf("start outbox: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	if err := srv.Listen(ctx); err != nil {
		t.Fatalf("outbox listener: %v", err)
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if limits.Duplicates == 0 {
		limits.Duplicates = 2 * time.Minute
	}
	if err := outbox.EnsureStreams(ctx, js, limits); err != nil {
		t.Fatalf("streams: %v", err)
	}
	return srv, js
}

// StartOutboxCluster starts three embedded servers (fsync before every
// acknowledgement) as one cluster and creates the outbox streams replicated
// on all three; it returns the servers' client URLs and a JetStream context
// on the first.
func StartOutboxCluster(t testing.TB, limits outbox.Limits) ([]string, jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	listen := []string{FreeAddr(t), FreeAddr(t), FreeAddr(t)}
	routes := make([]string, len(listen))
	for i, l := range listen {
		routes[i] = "nats-route://" + l
	}
	urls := make([]string, len(listen))
	for i := range listen {
		// A clustered server listens at once; it needs no quorum to start.
		srv, err := outbox.StartServer(ctx, outbox.ServerConfig{
			Name: fmt.Sprintf("n%d", i+1), Listen: "127.0.0.1:0", DataDir: t.TempDir(), SyncAlways: true,
			Cluster: outbox.ClusterConfig{Name: "test", Listen: listen[i], Routes: routes},
		}, Logger(t))
		if err != nil {
			t.Fatalf("start clustered outbox %d: %v", i+1, err)
		}
		t.Cleanup(srv.Shutdown)
		urls[i] = srv.ClientURL()
	}
	nc, err := nats.Connect(urls[0])
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	limits.Replicas = len(listen)
	if limits.Duplicates == 0 {
		limits.Duplicates = 2 * time.Minute
	}
	// Until the servers elected a meta leader, creating a stream fails.
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 5*time.Second)
		err := outbox.EnsureStreams(attempt, js, limits)
		cancelAttempt()
		if err == nil {
			return urls, js
		}
		select {
		case <-ctx.Done():
			t.Fatalf("replicated streams: %v", err)
		case <-time.After(100 * time.Millisecond): // an early failure returns at once
		}
	}
}

// FailFirst answers status to the first request of each event id and 200
// to the ones after it.
func FailFirst(status int) Answer {
	return func(_ Delivery, seen int) (int, http.Header) {
		if seen == 1 {
			return status, nil
		}
		return http.StatusOK, nil
	}
}

// While answers status as long as the flag is set, 200 after.
func While(flag *atomic.Bool, status int) Answer {
	return func(Delivery, int) (int, http.Header) {
		if flag.Load() {
			return status, nil
		}
		return http.StatusOK, nil
	}
}

// RefuseBadRetryOthers answers 400 to ids starting with "bad-" and 503 then
// 200 to the others: a run with a dead letter, a retry and a delivery.
func RefuseBadRetryOthers(d Delivery, seen int) (int, http.Header) {
	if strings.HasPrefix(d.ID, "bad-") {
		return http.StatusBadRequest, nil
	}
	return FailFirst(http.StatusServiceUnavailable)(d, seen)
}

// Get requests path from a handler over a real HTTP server and returns the
// status and body.
func Get(t testing.TB, h http.Handler, path string) (int, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// FreeAddr returns a loopback host:port that was free a moment ago, for
// servers that must know their address before they start (cluster routes).
func FreeAddr(t testing.TB) string {
	t.Helper()
	// Below the kernel's ephemeral range (32768-60999 by default): a port
	// from it may be taken meanwhile as the local end of any outgoing
	// connection, and a node restarted on its port then cannot listen
	// (seen in CI: "bind: address already in use" after a SIGKILL).
	for range 200 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// StoredIDs counts each event id in the outbox stream.
func StoredIDs(t testing.TB, js jetstream.JetStream) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, e := range StoredEnvelopes(t, js) {
		got[e.ID]++
	}
	return got
}

// StoredEnvelopes returns the events in the outbox stream, in stream order,
// decoded strictly: a field stored under a wrong name fails the test.
func StoredEnvelopes(t testing.TB, js jetstream.JetStream) []event.Envelope {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, outbox.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Envelope
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("read stream message %d: %v", seq, err)
		}
		e, err := event.Decode(m.Data)
		if err != nil {
			t.Fatalf("stream message %d is not an envelope: %v: %s", seq, err, m.Data)
		}
		out = append(out, e)
	}
	return out
}

// StartAuthOutbox starts an embedded outbox (fsync before every
// acknowledgement) that admits only users, connecting itself as self,
// with TLS on its client port when tlsFiles has a certificate; it sets up
// the outbox streams, a consumer that keeps events, and the sinks bucket,
// then opens the client port.
func StartAuthOutbox(t testing.TB, users []outbox.AuthUser, self outbox.Credentials, tlsFiles outbox.TLSFiles) (*outbox.Server, jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := outbox.StartServer(ctx, outbox.ServerConfig{
		Name: "auth", Listen: "127.0.0.1:0", DataDir: t.TempDir(), SyncAlways: true,
		Users: users, Self: self, TLS: tlsFiles,
	}, Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	if err := outbox.EnsureStreams(ctx, js, outbox.Limits{Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := outbox.EnsureConsumer(ctx, js, "probe", time.Minute, 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := outbox.EnsureBucket(ctx, js, outbox.BucketSinks, "sinks", 1); err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	return srv, js
}

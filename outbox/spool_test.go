package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/spool"
)

const waitFor = 20 * time.Second

func openSpool(t *testing.T) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func spoolLen(t *testing.T, sp *spool.Spool) int {
	t.Helper()
	n, err := sp.Len()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// startOutboxIn starts an outbox on dataDir, with its streams and one sink's
// consumer, listening on listen; the same dataDir and listen address make a
// restart of the same outbox.
func startOutboxIn(t *testing.T, dataDir, listen string) (*outbox.Server, jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := outbox.StartServer(ctx, outbox.ServerConfig{Name: "test", Listen: listen, DataDir: dataDir, SyncAlways: true}, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.InProcessConn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.EnsureStreams(ctx, js, outbox.Limits{Duplicates: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := outbox.EnsureConsumer(ctx, js, "probe", time.Minute, 100000); err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	return srv, js
}

func TestPublisherSpoolsWhileTheOutboxIsDownAndSendsOnceItIsBack(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	srv, _ := startOutboxIn(t, dataDir, "127.0.0.1:0")
	u, err := url.Parse(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	sp := openSpool(t)
	pub, err := outbox.Dial(ctx, srv.ClientURL(), 5*time.Second, outbox.WithSpool(sp), outbox.WithAckTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	before, err := pub.Emit(ctx, event.Envelope{Type: "T", Key: "before"})
	if err != nil {
		t.Fatalf("emit while the outbox is up: %v", err)
	}

	srv.Shutdown()
	during, err := pub.Emit(ctx, event.Envelope{Type: "T", Key: "during"})
	if !errors.Is(err, outbox.ErrSpooled) || during == "" {
		t.Fatalf("emit while the outbox is down = %q, %v; want its id and ErrSpooled", during, err)
	}
	if !strings.Contains(err.Error(), sp.Dir()) || !strings.Contains(err.Error(), during) {
		t.Errorf("error %q should say which event went where", err)
	}
	pe, err := pub.EmitAsync(ctx, event.Envelope{Type: "T", Key: "during-async"})
	if err != nil {
		t.Fatal(err)
	}
	<-pe.Done()
	if !pe.Spooled() || !errors.Is(pe.Err(), outbox.ErrSpooled) || pe.Duplicate() {
		t.Fatalf("async emit while down: spooled %v, err %v; want spooled", pe.Spooled(), pe.Err())
	}
	if n := spoolLen(t, sp); n != 2 {
		t.Fatalf("spool holds %d events, want 2", n)
	}

	// The same outbox comes back (same files, same address): the
	// publisher reconnects and its background flush sends the spool.
	_, js := startOutboxIn(t, dataDir, u.Host)
	t.Cleanup(func() { pub.Close() }) // before the server's own cleanup
	testutil.Eventually(t, waitFor, func() bool { return spoolLen(t, sp) == 0 }, "spool flushed after the outbox came back")
	got := testutil.StoredIDs(t, js)
	for _, id := range []string{before, during, pe.ID()} {
		if got[id] != 1 {
			t.Errorf("event %s stored %d times, want once (stored: %v)", id, got[id], got)
		}
	}
	if len(got) != 3 {
		t.Errorf("outbox holds %v, want exactly the 3 events", got)
	}
	after, err := pub.Emit(ctx, event.Envelope{Type: "T", Key: "after"})
	if err != nil {
		t.Fatalf("emit after the outbox came back: %v", err)
	}
	if testutil.StoredIDs(t, js)[after] != 1 {
		t.Errorf("event %s emitted after the outage is not stored", after)
	}
}

func TestDialWithSpoolSpoolsWhenNothingAnswers(t *testing.T) {
	sp := openSpool(t)
	start := time.Now()
	pub, err := outbox.Dial(context.Background(), "nats://courier:s3cretpw@127.0.0.1:1", time.Second, outbox.WithSpool(sp))
	if err != nil {
		t.Fatalf("Dial with a spool: %v; want a publisher that spools", err)
	}
	t.Cleanup(pub.Close)
	id, err := pub.Emit(context.Background(), event.Envelope{Type: "T"})
	if !errors.Is(err, outbox.ErrSpooled) || !errors.Is(err, outbox.ErrUnreachable) {
		t.Fatalf("emit = %v; want ErrSpooled caused by ErrUnreachable", err)
	}
	if strings.Contains(err.Error(), "s3cretpw") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("error %q should name the outbox without its password", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("spooling took %s; nothing should wait for an acknowledgement that cannot come", took)
	}
	if _, err := os.Stat(filepath.Join(sp.Dir(), id+".json")); err != nil {
		t.Errorf("spooled event %s has no file: %v", id, err)
	}

	// A job's action events are safe in the spool, so the job runs.
	ran := false
	err = pub.RunAction(context.Background(), event.Envelope{Type: "VOLUME.CREATE"}, func(context.Context) error { ran = true; return nil })
	if err != nil || !ran {
		t.Errorf("RunAction with the outbox unreachable = %v, ran %v; want the job run and its events spooled", err, ran)
	}
	if n := spoolLen(t, sp); n != 3 {
		t.Errorf("spool holds %d events, want 3", n)
	}
	// Nothing to send to: the flush fails at once and keeps everything.
	n, err := outbox.FlushSpool(context.Background(), pub, sp)
	if n != 0 || !errors.Is(err, outbox.ErrUnreachable) || spoolLen(t, sp) != 3 {
		t.Errorf("FlushSpool = %d, %v, %d left; want 0, ErrUnreachable, 3", n, err, spoolLen(t, sp))
	}
}

// answer makes a server where the outbox's subjects reach a plain
// subscriber instead of a stream, answering each publish with reply (nil:
// never answering), as a node cut off from its cluster does.
func answer(t *testing.T, reply []byte) (*outbox.Server, jetstream.JetStream, *nats.Subscription) {
	t.Helper()
	srv, js := testutil.StartOutbox(t, outbox.Limits{})
	if err := js.DeleteStream(context.Background(), outbox.StreamEvents); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.Subscribe(outbox.EventSubject(">"), func(m *nats.Msg) {
		if reply != nil && m.Reply != "" {
			_ = m.Respond(reply)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return srv, js, sub
}

func TestEventsTheOutboxCannotAcknowledgeAreSpooled(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) *outbox.Server
		cause error
	}{
		{"no acknowledgement in time", func(t *testing.T) *outbox.Server {
			srv, _, _ := answer(t, nil)
			return srv
		}, outbox.ErrNoAck},
		{"no quorum", func(t *testing.T) *outbox.Server {
			srv, _, _ := answer(t, []byte(`{"error":{"code":503,"err_code":10008,"description":"JetStream system temporarily unavailable"}}`))
			return srv
		}, outbox.ErrUnavailable},
		{"no stream", func(t *testing.T) *outbox.Server {
			srv, js := testutil.StartOutbox(t, outbox.Limits{})
			if err := js.DeleteStream(context.Background(), outbox.StreamEvents); err != nil {
				t.Fatal(err)
			}
			return srv
		}, outbox.ErrNoStream},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tt.setup(t)
			sp := openSpool(t)
			p := dial(t, srv, outbox.WithSpool(sp), outbox.WithAckTimeout(300*time.Millisecond))
			id, err := p.Emit(context.Background(), event.Envelope{Type: "T"})
			if !errors.Is(err, outbox.ErrSpooled) || !errors.Is(err, tt.cause) {
				t.Fatalf("emit = %v; want ErrSpooled caused by %v", err, tt.cause)
			}
			// Enough at once to go as one atomic batch.
			var pending []*outbox.Pending
			for i := range 50 {
				pe, err := p.EmitAsync(context.Background(), event.Envelope{ID: fmt.Sprintf("async-%02d", i), Type: "T"})
				if err != nil {
					t.Fatal(err)
				}
				pending = append(pending, pe)
			}
			for _, pe := range pending {
				<-pe.Done()
				if !pe.Spooled() || !errors.Is(pe.Err(), outbox.ErrSpooled) {
					t.Fatalf("async emit %s: spooled %v, err %v; want spooled", pe.ID(), pe.Spooled(), pe.Err())
				}
			}
			if n := spoolLen(t, sp); n != 51 {
				t.Errorf("spool holds %d events, want 51", n)
			}
			if _, err := os.Stat(filepath.Join(sp.Dir(), id+".json")); err != nil {
				t.Errorf("event %s not in the spool: %v", id, err)
			}
		})
	}
}

func TestSpooledEventsReachTheOutboxOnceItAcknowledgesAgain(t *testing.T) {
	srv, js, swallow := answer(t, nil)
	sp := openSpool(t)
	p := dial(t, srv, outbox.WithSpool(sp), outbox.WithAckTimeout(300*time.Millisecond))
	var ids []string
	for i := range 5 {
		id, err := p.Emit(context.Background(), event.Envelope{ID: fmt.Sprintf("late-%d", i), Type: "T"})
		if !errors.Is(err, outbox.ErrSpooled) {
			t.Fatalf("emit %d = %v; want ErrSpooled", i, err)
		}
		ids = append(ids, id)
	}
	// The stream comes back; the publisher's connection never went away.
	if err := swallow.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := outbox.EnsureStreams(context.Background(), js, outbox.Limits{Duplicates: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	withSink(t, js)
	testutil.Eventually(t, waitFor, func() bool { return spoolLen(t, sp) == 0 }, "spool flushed by the publisher")
	got := testutil.StoredIDs(t, js)
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("event %s stored %d times, want once", id, got[id])
		}
	}
}

func TestEmitWhoseCallerStopsWaitingIsSpooled(t *testing.T) {
	srv, _, _ := answer(t, nil)
	sp := openSpool(t)
	p := dial(t, srv, outbox.WithSpool(sp), outbox.WithAckTimeout(2*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	id, err := p.Emit(ctx, event.Envelope{Type: "T"})
	if !errors.Is(err, outbox.ErrSpooled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("emit = %v; want ErrSpooled caused by the deadline", err)
	}
	if _, err := os.Stat(filepath.Join(sp.Dir(), id+".json")); err != nil {
		t.Errorf("event %s not in the spool: %v", id, err)
	}
}

func TestErrorsThatRetryingCannotFixAreNotSpooled(t *testing.T) {
	srv, js := testutil.StartOutbox(t, outbox.Limits{MaxBytes: 8 << 10})
	withSink(t, js)
	sp := openSpool(t)
	p := dial(t, srv, outbox.WithSpool(sp), outbox.WithMaxEventSize(1024))

	if _, err := p.Emit(context.Background(), event.Envelope{Type: "T", Data: []byte(`"` + strings.Repeat("x", 2000) + `"`)}); !errors.Is(err, outbox.ErrTooLarge) || errors.Is(err, outbox.ErrSpooled) {
		t.Errorf("too large: err = %v, want ErrTooLarge, not spooled", err)
	}
	if _, err := p.Emit(context.Background(), event.Envelope{Type: "BAD TYPE"}); !errors.Is(err, event.ErrInvalid) {
		t.Errorf("invalid: err = %v, want ErrInvalid", err)
	}
	var err error
	for range 1000 {
		if _, err = p.Emit(context.Background(), event.Envelope{Type: "T", Data: []byte(`"` + strings.Repeat("x", 200) + `"`)}); err != nil {
			break
		}
	}
	if !errors.Is(err, outbox.ErrFull) || errors.Is(err, outbox.ErrSpooled) {
		t.Errorf("full outbox: err = %v, want ErrFull, not spooled", err)
	}
	if n := spoolLen(t, sp); n != 0 {
		t.Errorf("spool holds %d events, want none", n)
	}
}

func TestFlushSpoolKeepsIDsCountsDuplicatesAndSetsAsideWhatCanNeverGo(t *testing.T) {
	srv, js := testutil.StartOutbox(t, outbox.Limits{})
	withSink(t, js)
	p := dial(t, srv, outbox.WithMaxEventSize(1024)) // no spool of its own
	sp := openSpool(t)
	var ids []string
	for i := range 3 {
		e := event.Envelope{ID: fmt.Sprintf("s-%d", i), Type: "T"}
		if err := e.Complete("n"); err != nil {
			t.Fatal(err)
		}
		if err := sp.Put(e); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	// The first one reached the outbox before (its acknowledgement was
	// lost): sending it again is a duplicate, which counts as sent.
	if _, err := p.Emit(context.Background(), event.Envelope{ID: "s-0", Type: "T"}); err != nil {
		t.Fatal(err)
	}
	big := event.Envelope{ID: "s-big", Type: "T", Data: []byte(`"` + strings.Repeat("x", 2000) + `"`)}
	if err := big.Complete("n"); err != nil {
		t.Fatal(err)
	}
	if err := sp.Put(big); err != nil {
		t.Fatal(err)
	}

	n, err := outbox.FlushSpool(context.Background(), p, sp)
	if n != 3 {
		t.Errorf("FlushSpool sent %d, want 3", n)
	}
	if !errors.Is(err, spool.ErrBadFile) || !strings.Contains(err.Error(), "s-big") {
		t.Errorf("FlushSpool error = %v, want the too-large event reported as moved aside", err)
	}
	if _, serr := os.Stat(filepath.Join(sp.Dir(), "bad", "s-big.json")); serr != nil {
		t.Errorf("too-large event not kept in bad/: %v", serr)
	}
	if l := spoolLen(t, sp); l != 0 {
		t.Errorf("spool holds %d events, want 0", l)
	}
	got := testutil.StoredIDs(t, js)
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("event %s stored %d times, want once", id, got[id])
		}
	}
	if len(got) != 3 {
		t.Errorf("outbox holds %v, want the 3 events", got)
	}
}

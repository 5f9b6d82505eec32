package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
)

// withSink registers a consumer: the outbox keeps events only while some
// sink still has to deliver them.
func withSink(t *testing.T, js jetstream.JetStream) jetstream.Consumer { return withSinkB(t, js) }

func withSinkB(t testing.TB, js jetstream.JetStream) jetstream.Consumer {
	t.Helper()
	c, err := outbox.EnsureConsumer(context.Background(), js, "probe", time.Minute, 100000)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func stored(t testing.TB, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), outbox.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func dial(t *testing.T, srv *outbox.Server, opts ...outbox.PublisherOption) *outbox.Publisher {
	t.Helper()
	p, err := outbox.Dial(context.Background(), srv.ClientURL(), 5*time.Second, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestEmitFromConcurrentProducersStoresEveryEventOnce(t *testing.T) {
	srv, js := testutil.StartOutbox(t, outbox.Limits{})
	withSink(t, js)
	p := dial(t, srv)
	const producers, each = 16, 100
	var wg sync.WaitGroup
	errs := make(chan error, producers*each)
	for w := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// Now and then a producer re-emits its previous event, as
				// after a timeout: a retried emit must be stored once.
				id := fmt.Sprintf("p%d-e%d", w, i)
				if _, err := p.Emit(context.Background(), event.Envelope{ID: id, Type: "VOLUME_CREATE"}); err != nil {
					errs <- err
				}
				if i%10 == 9 {
					if _, err := p.Emit(context.Background(), event.Envelope{ID: fmt.Sprintf("p%d-e%d", w, i-1), Type: "VOLUME_CREATE"}); err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("emit: %v", err)
	}
	if got := stored(t, js); got != producers*each {
		t.Errorf("stored %d events, want %d", got, producers*each)
	}
}

func TestEmitAsyncBatchWithRepeatedIDStoresEachOnce(t *testing.T) {
	srv, js := testutil.StartOutbox(t, outbox.Limits{})
	withSink(t, js)
	p := dial(t, srv)
	var pending []*outbox.Pending
	for i := range 300 {
		// ids repeat every 100: whole batches get refused by JetStream and
		// must be retried event by event.
		pe, err := p.EmitAsync(context.Background(), event.Envelope{ID: fmt.Sprintf("id-%d", i%100), Type: "T"})
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, pe)
	}
	dups := 0
	for _, pe := range pending {
		if _, err := pe.Wait(context.Background()); err != nil {
			t.Fatalf("emit %s: %v", pe.ID(), err)
		}
		if pe.Duplicate() {
			dups++
		}
	}
	if got := stored(t, js); got != 100 {
		t.Errorf("stored %d events, want 100", got)
	}
	if dups == 0 {
		t.Errorf("no emit reported as duplicate")
	}
}

func TestEmitKeepsOneProducersOrder(t *testing.T) {
	srv, js := testutil.StartOutbox(t, outbox.Limits{})
	cons := withSink(t, js)
	p := dial(t, srv)
	const n = 3000
	var last *outbox.Pending
	for i := range n {
		pe, err := p.EmitAsync(context.Background(), event.Envelope{ID: fmt.Sprintf("o-%05d", i), Type: "T"})
		if err != nil {
			t.Fatal(err)
		}
		last = pe
	}
	if _, err := last.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return stored(t, js) == n }, "all stored")
	for i := 0; i < n; {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			e, err := event.Decode(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("o-%05d", i); e.ID != want {
				t.Fatalf("stored position %d holds %s, want %s", i, e.ID, want)
			}
			i++
		}
	}
}

func TestEmitTooLargeEventIsRejectedBeforeSending(t *testing.T) {
	srv, js := testutil.StartOutbox(t, outbox.Limits{})
	withSink(t, js)
	p := dial(t, srv, outbox.WithMaxEventSize(1024))
	_, err := p.Emit(context.Background(), event.Envelope{Type: "T", Data: []byte(`"` + strings.Repeat("x", 2000) + `"`)})
	if !errors.Is(err, outbox.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if got := stored(t, js); got != 0 {
		t.Errorf("stored %d, want 0", got)
	}
}

func TestEmitToServerLimitIsRejectedAsTooLarge(t *testing.T) {
	srv, js := testutil.StartOutbox(t, outbox.Limits{MaxEventSize: 512})
	withSink(t, js)
	p := dial(t, srv) // the client's own limit (1 MiB) is above the stream's
	_, err := p.Emit(context.Background(), event.Envelope{Type: "T", Data: []byte(`"` + strings.Repeat("x", 1000) + `"`)})
	if !errors.Is(err, outbox.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestFullOutboxRejectsNewEventsAndKeepsOldOnes(t *testing.T) {
	srv, js := testutil.StartOutbox(t, outbox.Limits{MaxBytes: 8 << 10})
	withSink(t, js)
	p := dial(t, srv)
	var ok int
	var err error
	for i := 0; i < 1000; i++ {
		if _, err = p.Emit(context.Background(), event.Envelope{Type: "T", Data: []byte(`"` + strings.Repeat("x", 200) + `"`)}); err != nil {
			break
		}
		ok++
	}
	if !errors.Is(err, outbox.ErrFull) {
		t.Fatalf("after %d events: err = %v, want ErrFull", ok, err)
	}
	if got := stored(t, js); got != uint64(ok) {
		t.Errorf("stored %d events, want the %d acknowledged ones: none dropped", got, ok)
	}
}

func TestEmitWithoutOutboxStreamFailsClearly(t *testing.T) {
	srv, js := testutil.StartOutbox(t, outbox.Limits{})
	if err := js.DeleteStream(context.Background(), outbox.StreamEvents); err != nil {
		t.Fatal(err)
	}
	p := dial(t, srv)
	_, err := p.Emit(context.Background(), event.Envelope{Type: "T"})
	if !errors.Is(err, outbox.ErrNoStream) {
		t.Fatalf("err = %v, want ErrNoStream", err)
	}
}

func TestDialUnreachableOutboxFails(t *testing.T) {
	start := time.Now()
	_, err := outbox.Dial(context.Background(), "nats://127.0.0.1:1", time.Second)
	if !errors.Is(err, outbox.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("dial took %s; it must give up after a bounded wait", time.Since(start))
	}
}

func TestEmitInvalidEventIsRejected(t *testing.T) {
	srv, _ := testutil.StartOutbox(t, outbox.Limits{})
	p := dial(t, srv)
	for _, e := range []event.Envelope{{}, {Type: "has space"}, {Type: "T", Level: "LOUD"}, {Type: "T", Data: []byte("{")}} {
		if _, err := p.Emit(context.Background(), e); !errors.Is(err, event.ErrInvalid) {
			t.Errorf("emit %+v: err = %v, want ErrInvalid", e, err)
		}
	}
}

func TestFullOutboxRefusesAQueuedStreamPromptly(t *testing.T) {
	srv, js := testutil.StartOutbox(t, outbox.Limits{MaxBytes: 4 << 10})
	withSink(t, js)
	p := dial(t, srv)
	var pending []*outbox.Pending
	for range 5000 {
		pe, err := p.EmitAsync(context.Background(), event.Envelope{Type: "T", Data: []byte(`"` + strings.Repeat("x", 200) + `"`)})
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, pe)
	}
	start := time.Now()
	full := 0
	for _, pe := range pending {
		if _, err := pe.Wait(context.Background()); errors.Is(err, outbox.ErrFull) {
			full++
		} else if err != nil {
			t.Fatalf("emit: %v", err)
		}
	}
	if full < 4900 {
		t.Errorf("%d of 5000 refused as full, want nearly all", full)
	}
	t.Logf("5000 queued events refused in %s", time.Since(start))
}

func TestUnreachableErrorHidesThePassword(t *testing.T) {
	_, err := outbox.Dial(context.Background(), "nats://courier:s3cretpw@127.0.0.1:1", time.Second)
	if err == nil || strings.Contains(err.Error(), "s3cretpw") {
		t.Fatalf("err = %v; want an error without the password", err)
	}
}

func TestRunActionEmitsCloudStackStatesLinkedByStartID(t *testing.T) {
	srv, js := testutil.StartOutbox(t, outbox.Limits{})
	cons := withSink(t, js)
	p := dial(t, srv)
	job := event.Envelope{Type: "VOLUME.CREATE", Data: []byte(`{"name":"vol1"}`)}
	if err := p.RunAction(context.Background(), job, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("disk full")
	if err := p.RunAction(context.Background(), job, func(context.Context) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("RunAction = %v, want the job's error", err)
	}
	var got []event.Envelope
	batch, err := cons.Fetch(4, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		e, err := event.Decode(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if len(got) != 4 {
		t.Fatalf("got %d events, want Started+Completed twice", len(got))
	}
	want := []struct {
		state event.State
		level event.Level
	}{{event.StateStarted, event.LevelInfo}, {event.StateCompleted, event.LevelInfo}, {event.StateStarted, event.LevelInfo}, {event.StateCompleted, event.LevelError}}
	for i, w := range want {
		if got[i].State != w.state || got[i].Level != w.level || got[i].Type != "VOLUME.CREATE" {
			t.Errorf("event %d = %s %s %s, want %s %s", i, got[i].Type, got[i].State, got[i].Level, w.state, w.level)
		}
	}
	if got[1].StartID != got[0].ID || got[3].StartID != got[2].ID {
		t.Errorf("Completed start_id %q/%q, want the Started ids %q/%q", got[1].StartID, got[3].StartID, got[0].ID, got[2].ID)
	}
	if !strings.Contains(string(got[3].Data), "disk full") {
		t.Errorf("failed Completed data = %s, want the error", got[3].Data)
	}
}

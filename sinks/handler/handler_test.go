package handler_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/retry"
	"github.com/courierhq/courier/sinks"
	"github.com/courierhq/courier/sinks/handler"
	"github.com/courierhq/courier/sinks/sinktest"
)

// peer is a function that records what it is called with, and fails
// (retryable, as a dependency being down would) while stopped.
type peer struct {
	mu       sync.Mutex
	got      []sinktest.Received
	stopped  atomic.Bool
	sendOpts []handler.Option
	// The suite's restart scenario stops the peer once a quarter of its
	// events went through, assuming a transport slow enough for that to
	// happen mid-stream; an in-process call is not. So past 60 of those
	// events the handler waits for the stop, as if the dependency it
	// updates were going away.
	restartCalls atomic.Int64
	gate         chan struct{} // made at the scenario's first event, closed by the Stop after it; under mu
	gateClosed   bool
}

func (p *peer) handle(ctx context.Context, e event.Envelope) error {
	if strings.HasPrefix(e.ID, "restart-") {
		p.mu.Lock()
		if p.gate == nil {
			p.gate = make(chan struct{})
		}
		gate := p.gate
		p.mu.Unlock()
		if p.restartCalls.Add(1) > 60 {
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if p.stopped.Load() {
		return errors.New("the cache this handler updates is down")
	}
	sc := trace.SpanContextFromContext(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, sinktest.Received{ID: e.ID, TransportID: e.ID, TraceParent: sc.TraceID().String()})
	return nil
}

func (p *peer) NewSink(t testing.TB) sinks.Sink {
	s, err := handler.New(handler.Config{Handler: "cache"}, p.handle, p.sendOpts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (p *peer) Received(testing.TB) []sinktest.Received {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]sinktest.Received(nil), p.got...)
}

func (p *peer) Stop(testing.TB) {
	p.stopped.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate != nil && !p.gateClosed {
		close(p.gate)
		p.gateClosed = true
	}
}

func (p *peer) Start(testing.TB) { p.stopped.Store(false) }

func (p *peer) Refusing(t testing.TB) (sinks.Sink, *event.Envelope) {
	s, err := handler.New(handler.Config{Handler: "strict"}, func(context.Context, event.Envelope) error {
		return retry.NewPermanent(errors.New("this event can never be applied"))
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, sinktest.NewEvent("refused")
}

// A handler passes the suite every sink passes.
func TestHandlerConformance(t *testing.T) { sinktest.Run(t, &peer{}) }

func send(t *testing.T, fn handler.Func, timeout time.Duration) error {
	t.Helper()
	s, err := handler.New(handler.Config{Handler: "h", Timeout: timeout}, fn)
	if err != nil {
		t.Fatal(err)
	}
	return s.Send(context.Background(), sinktest.NewEvent("e1"))
}

// What the function returns decides the outcome; a panic is a permanent
// failure, not a crashed worker; a function past its timeout sees its
// ctx done.
func TestOutcomes(t *testing.T) {
	if err := send(t, func(context.Context, event.Envelope) error { return nil }, 0); err != nil {
		t.Errorf("nil: %v", err)
	}
	if k := retry.Classify(send(t, func(context.Context, event.Envelope) error { return errors.New("later") }, 0)).Kind; k != retry.Retryable {
		t.Errorf("a plain error classified %s, want retryable", k)
	}
	if k := retry.Classify(send(t, func(context.Context, event.Envelope) error { return retry.NewPermanent(errors.New("never")) }, 0)).Kind; k != retry.Permanent {
		t.Errorf("retry.NewPermanent classified %s, want permanent", k)
	}
	err := send(t, func(context.Context, event.Envelope) error { panic("nil map") }, 0)
	if k := retry.Classify(err).Kind; k != retry.Permanent {
		t.Errorf("a panic: %v classified %s, want permanent", err, k)
	}
	if !strings.Contains(err.Error(), "nil map") || !strings.Contains(err.Error(), "handler_test.go:") {
		t.Errorf("a panic: %v, want its value and the line that panicked", err)
	}
	err = send(t, func(ctx context.Context, _ event.Envelope) error { <-ctx.Done(); return ctx.Err() }, 50*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || retry.Classify(err).Kind != retry.Retryable {
		t.Errorf("past its timeout: %v, want a retryable deadline", err)
	}
	// The function gets a copy: what it changes is not what is stored.
	e := sinktest.NewEvent("e2")
	s, _ := handler.New(handler.Config{Handler: "h"}, func(_ context.Context, got event.Envelope) error { got.Type = "CHANGED"; return nil })
	if err := s.Send(context.Background(), e); err != nil || e.Type != "VOLUME_CREATE" {
		t.Errorf("send: %v; the event's type is now %q", err, e.Type)
	}
}

func TestUnregisteredOrBadName(t *testing.T) {
	if _, err := handler.New(handler.Config{Handler: "missing"}, nil); !errors.Is(err, handler.ErrNotRegistered) {
		t.Errorf("no function: %v, want ErrNotRegistered", err)
	}
	if _, err := handler.New(handler.Config{Handler: "has space"}, func(context.Context, event.Envelope) error { return nil }); err == nil {
		t.Error("a name with a space was accepted")
	}
}

// Changing Data in the function changes nothing the worker holds.
func TestDataIsCopied(t *testing.T) {
	e := sinktest.NewEvent("e3")
	before := string(e.Data)
	s, _ := handler.New(handler.Config{Handler: "h"}, func(_ context.Context, got event.Envelope) error { got.Data[2] = 'X'; return nil })
	if err := s.Send(context.Background(), e); err != nil || string(e.Data) != before {
		t.Errorf("send: %v; the event's data is now %s, was %s", err, e.Data, before)
	}
}

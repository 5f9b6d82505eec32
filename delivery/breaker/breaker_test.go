package breaker

import (
	"context"
	"errors"
	"testing"
	"time"
)

var errTimeout = errors.New("request timed out")

// The sink's concurrency is in flight when the endpoint stalls: every one of
// those attempts fails at about the same moment. They are one outage, not
// 64: the circuit opens once and the first probe stays ProbeInitial away.
// (Each used to double the interval, setting the probe ProbeMax away.)
func TestBreakerInFlightFailuresAreOneOutage(t *testing.T) {
	b := New(Config{Failures: 5, ProbeInitial: time.Second, ProbeMax: time.Minute})
	t0 := time.Unix(1_000_000, 0)
	failedAt := t0.Add(time.Second) // the attempt timeout
	opened := 0
	for range 64 {
		if o, _ := b.Record(errTimeout, t0, failedAt); o {
			opened++
		}
	}
	open, probeAt := b.State()
	if opened != 1 || !open {
		t.Fatalf("opened %d times, open %v; want once, open", opened, open)
	}
	if want := failedAt.Add(time.Second); !probeAt.Equal(want) {
		t.Fatalf("next probe at +%s, want +%s (ProbeInitial after opening)", probeAt.Sub(t0), want.Sub(t0))
	}
	// A failed probe doubles the interval, once.
	b.Record(errTimeout, probeAt, probeAt.Add(time.Second))
	if _, next := b.State(); !next.Equal(probeAt.Add(3 * time.Second)) {
		t.Fatalf("after a failed probe the next is at +%s, want +%s", next.Sub(t0), probeAt.Add(3*time.Second).Sub(t0))
	}
}

// An attempt still in flight that succeeds closes the circuit and wakes the
// loop waiting for its next probe at once; the failures of attempts begun
// before the close do not open it again.
func TestBreakerSuccessInFlightClosesAndWakesTheLoop(t *testing.T) {
	b := New(Config{Failures: 5, ProbeInitial: time.Hour, ProbeMax: time.Hour})
	started := time.Now()
	for range 5 {
		b.Record(errTimeout, started, time.Now())
	}
	if open, _ := b.State(); !open {
		t.Fatal("circuit not open after 5 failures")
	}
	woke := make(chan bool, 1)
	go func() { woke <- b.WaitProbe(context.Background()) }()
	if _, closed := b.Record(nil, started, time.Now()); !closed {
		t.Fatal("a success did not close the circuit")
	}
	select {
	case open := <-woke:
		if open {
			t.Fatal("waitProbe returned with the circuit open")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waitProbe still waiting for the probe an hour away after the circuit closed")
	}
	for range 10 {
		b.Record(errTimeout, started, time.Now())
	}
	if open, _ := b.State(); open {
		t.Fatal("failures of attempts begun before the close opened the circuit again")
	}
	for range 5 {
		b.Record(errTimeout, time.Now(), time.Now())
	}
	if open, _ := b.State(); !open {
		t.Fatal("5 new failures after the close did not open the circuit")
	}
}

// Package breaker is a sink's circuit breaker: its settings
// (circuit_breaker: in a sink definition) and its state. It opens after a
// run of retryable failures and lets one probe through at a growing
// interval until the endpoint answers again.
package breaker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/courierhq/courier/retry"
)

// Config: after Failures attempts in a row fail with a retryable
// error, the sink's circuit opens: the loop stops fetching and probes the
// endpoint with one event at a growing interval (ProbeInitial doubling up to
// ProbeMax) until one succeeds. Events waiting meanwhile spend no attempts,
// so an outage shorter than retry.max_age dead-letters nothing.
// A negative Failures turns the breaker off; 0 means the default, 5.
type Config struct {
	// Failures is how many retryable failures in a row open the circuit
	// (-1: never).
	Failures int `yaml:"failures"`
	// ProbeInitial is the first wait before a probe, doubling after each
	// failed probe up to ProbeMax.
	ProbeInitial time.Duration `yaml:"probe_initial"`
	ProbeMax     time.Duration `yaml:"probe_max"`
}

// Breaker defaults.
const (
	DefaultFailures     = 5
	DefaultProbeInitial = time.Second
	DefaultProbeMax     = time.Minute
)

// WithDefaults fills the zero fields (a negative Failures turns it off).
func (c Config) WithDefaults() Config {
	if c.Failures == 0 {
		c.Failures = DefaultFailures
	}
	if c.ProbeInitial == 0 {
		c.ProbeInitial = DefaultProbeInitial
	}
	if c.ProbeMax == 0 {
		c.ProbeMax = DefaultProbeMax
	}
	return c
}

// Validate reports settings the breaker cannot work with, once the
// defaults are filled in.
func (c Config) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.ProbeInitial < 0:
		return fmt.Errorf("circuit_breaker.probe_initial must be positive, got %s", c.ProbeInitial)
	case c.ProbeMax < c.ProbeInitial:
		return fmt.Errorf("circuit_breaker.probe_max (%s) must not be below circuit_breaker.probe_initial (%s)", c.ProbeMax, c.ProbeInitial)
	}
	return nil
}

// Breaker is one sink's circuit. A Breaker of a Config whose Failures is
// negative never opens.
type Breaker struct {
	cfg Config

	mu        sync.Mutex
	failures  int
	open      bool
	interval  time.Duration
	nextProbe time.Time
	// closedAt is when the circuit last closed: a failed attempt that
	// started before then belongs to the outage it was open for.
	closedAt time.Time
	// closed is closed when the circuit closes (made when it opens), so
	// that a loop waiting for its next probe resumes at once.
	closed chan struct{}
}

// New returns a closed circuit; cfg has its defaults filled in.
func New(cfg Config) *Breaker { return &Breaker{cfg: cfg} }

func (b *Breaker) Enabled() bool { return b.cfg.Failures > 0 }

// Record notes the outcome of an attempt that started at started and ended
// at now. A permanent failure says the endpoint is up (it answered), so it
// counts as a success here.
//
// Only failures that tell something new count: while the circuit is open,
// that is a probe's (an attempt begun once the probe was due), which pushes
// the next probe out; attempts that were under way when the circuit opened
// fail with the outage that opened it. Counting those too, the attempts in
// flight (up to the sink's concurrency, all failing together when the
// endpoint is slower than the timeout for a moment) each doubled the probe
// interval: one hiccup set the next probe probe_max away, and delivery
// stopped for that long. Likewise, once the circuit closed, failures of
// attempts begun before that do not count toward opening it again.
func (b *Breaker) Record(err error, started, now time.Time) (opened, closed bool) {
	if !b.Enabled() {
		return false, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil || retry.Classify(err).Kind == retry.Permanent {
		b.failures = 0
		if b.open {
			b.open, b.closedAt = false, now
			close(b.closed)
			return false, true
		}
		return false, false
	}
	switch {
	case b.open:
		if !started.Before(b.nextProbe) {
			// A probe failed. The keys of an ordered sink probe together;
			// pushing nextProbe out makes this the round's one doubling.
			b.interval = min(b.interval*2, b.cfg.ProbeMax)
			b.nextProbe = now.Add(b.interval)
		}
	case started.Before(b.closedAt):
	default:
		b.failures++
		if b.failures >= b.cfg.Failures {
			b.open, b.interval = true, b.cfg.ProbeInitial
			b.nextProbe = now.Add(b.interval)
			b.closed = make(chan struct{})
			return true, false
		}
	}
	return false, false
}

// WaitProbe waits until the open circuit's next probe is due, the circuit
// closes (an attempt still in flight succeeded) or ctx ends, and reports
// whether the circuit is still open.
func (b *Breaker) WaitProbe(ctx context.Context) (open bool) {
	for {
		b.mu.Lock()
		open, at, closed := b.open, b.nextProbe, b.closed
		b.mu.Unlock()
		wait := time.Until(at)
		if !open || wait <= 0 || ctx.Err() != nil {
			return open
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-closed:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// WaitClosed waits up to d for the open circuit to close, or ctx to end.
func (b *Breaker) WaitClosed(ctx context.Context, d time.Duration) {
	b.mu.Lock()
	open, closed := b.open, b.closed
	b.mu.Unlock()
	if !open {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-closed:
	case <-t.C:
	case <-ctx.Done():
	}
}

// State reports whether the circuit is open and, if so, when to probe.
func (b *Breaker) State() (open bool, probeAt time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open, b.nextProbe
}

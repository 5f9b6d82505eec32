package delivery

import (
	"sync"
	"time"

	"github.com/courierhq/courier/retry"
)

// BreakerConfig: after Failures attempts in a row fail with a retryable
// error, the sink's circuit opens: the loop stops fetching and probes the
// endpoint with one event at a growing interval (ProbeInitial doubling up to
// ProbeMax) until one succeeds. Events waiting meanwhile spend no attempts,
// so an outage shorter than retry.max_age dead-letters nothing.
// Failures 0 turns the breaker off.
type BreakerConfig struct {
	Failures     int           `yaml:"failures"`
	ProbeInitial time.Duration `yaml:"probe_initial"`
	ProbeMax     time.Duration `yaml:"probe_max"`
}

// Breaker defaults.
const (
	DefaultBreakerFailures = 5
	DefaultProbeInitial    = time.Second
	DefaultProbeMax        = time.Minute
)

// WithDefaults fills the zero fields (a negative Failures turns it off).
func (c BreakerConfig) WithDefaults() BreakerConfig {
	if c.Failures == 0 {
		c.Failures = DefaultBreakerFailures
	}
	if c.ProbeInitial == 0 {
		c.ProbeInitial = DefaultProbeInitial
	}
	if c.ProbeMax == 0 {
		c.ProbeMax = DefaultProbeMax
	}
	return c
}

// breaker is one sink's circuit.
type breaker struct {
	cfg BreakerConfig

	mu        sync.Mutex
	failures  int
	open      bool
	interval  time.Duration
	nextProbe time.Time
}

func newBreaker(cfg BreakerConfig) *breaker { return &breaker{cfg: cfg} }

func (b *breaker) enabled() bool { return b.cfg.Failures > 0 }

// record notes an attempt's outcome. A permanent failure says the endpoint
// is up (it answered), so it counts as a success here.
func (b *breaker) record(err error, now time.Time) (opened, closed bool) {
	if !b.enabled() {
		return false, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil || retry.Classify(err).Kind == retry.Permanent {
		b.failures = 0
		if b.open {
			b.open = false
			return false, true
		}
		return false, false
	}
	b.failures++
	switch {
	case b.open:
		b.interval = min(b.interval*2, b.cfg.ProbeMax)
		b.nextProbe = now.Add(b.interval)
	case b.failures >= b.cfg.Failures:
		b.open, b.interval = true, b.cfg.ProbeInitial
		b.nextProbe = now.Add(b.interval)
		return true, false
	}
	return false, false
}

// state reports whether the circuit is open and, if so, when to probe.
func (b *breaker) state() (open bool, probeAt time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open, b.nextProbe
}

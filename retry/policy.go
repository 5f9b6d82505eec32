package retry

import (
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"gopkg.in/yaml.v3"
)

// Policy is a sink's retry schedule.
type Policy struct {
	// Initial is the delay before the second attempt.
	Initial time.Duration `yaml:"initial"`
	// Multiplier grows the delay after each failed attempt.
	Multiplier float64 `yaml:"multiplier"`
	// MaxInterval caps a single delay.
	MaxInterval time.Duration `yaml:"max_interval"`
	// MaxAttempts is the number of attempts (the first included) before an
	// event is dead-lettered.
	MaxAttempts int `yaml:"max_attempts"`
	// MaxAge dead-letters an event that is still undelivered this long after
	// it was stored.
	MaxAge time.Duration `yaml:"max_age"`
	// Jitter spreads retries of events that failed together, as a fraction of
	// the delay (0.5 means ±50%). Zero takes the default unless written
	// as "jitter: 0" (UnmarshalYAML sets NoJitter then).
	Jitter float64 `yaml:"jitter"`
	// NoJitter makes a zero Jitter mean none rather than the default.
	NoJitter bool `yaml:"-"`
}

// UnmarshalYAML decodes a policy strictly, noting a "jitter: 0" written
// out, so that an operator can turn jitter off although 0 is the zero
// value every other field reads as "the default".
func (p *Policy) UnmarshalYAML(node *yaml.Node) error {
	type plain Policy
	var v plain
	if err := node.Decode(&v); err != nil {
		return err
	}
	*p = Policy(v)
	for i := 0; i+1 < len(node.Content); i += 2 {
		key := node.Content[i]
		switch key.Value {
		case "initial", "multiplier", "max_interval", "max_attempts", "max_age":
		case "jitter":
			p.NoJitter = p.Jitter == 0
		default:
			return fmt.Errorf("line %d: unknown key %q in retry (initial, multiplier, max_interval, max_attempts, max_age, jitter)", key.Line, key.Value)
		}
	}
	return nil
}

// DefaultPolicy retries for about two and a half days over 25 attempts
// (1s, 2s, 4s … then every 6h), within the 72h max age: long enough to ride
// out a weekend outage of a receiver, after which the dead letter can be
// replayed.
func DefaultPolicy() Policy {
	return Policy{
		Initial:     time.Second,
		Multiplier:  2,
		MaxInterval: 6 * time.Hour,
		MaxAttempts: 25,
		MaxAge:      72 * time.Hour,
		Jitter:      0.2,
	}
}

// WithDefaults returns p with every zero field taken from DefaultPolicy.
func (p Policy) WithDefaults() Policy { return p.WithDefaultsFrom(DefaultPolicy()) }

// WithDefaultsFrom fills the unset fields from d (an operator's default
// policy).
func (p Policy) WithDefaultsFrom(d Policy) Policy {
	if p.Initial == 0 {
		p.Initial = d.Initial
	}
	if p.Multiplier == 0 {
		p.Multiplier = d.Multiplier
	}
	if p.MaxInterval == 0 {
		p.MaxInterval = d.MaxInterval
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.MaxAge == 0 {
		p.MaxAge = d.MaxAge
	}
	if p.Jitter == 0 && !p.NoJitter {
		p.Jitter = d.Jitter
	}
	return p
}

// Validate reports a policy that cannot work.
func (p Policy) Validate() error {
	switch {
	case p.Initial <= 0:
		return fmt.Errorf("retry.initial must be positive, got %s", p.Initial)
	case p.Multiplier < 1:
		return fmt.Errorf("retry.multiplier must be at least 1, got %g", p.Multiplier)
	case p.MaxInterval < p.Initial:
		return fmt.Errorf("retry.max_interval (%s) must not be below retry.initial (%s)", p.MaxInterval, p.Initial)
	case p.MaxAttempts < 1:
		return fmt.Errorf("retry.max_attempts must be at least 1, got %d", p.MaxAttempts)
	case p.MaxAge <= 0:
		return fmt.Errorf("retry.max_age must be positive, got %s", p.MaxAge)
	case p.Jitter < 0 || p.Jitter > 1:
		return fmt.Errorf("retry.jitter must be between 0 and 1, got %g", p.Jitter)
	}
	return nil
}

// Delay returns how long to wait after the given failed attempt (1 for the
// first) before the next one. The schedule is recomputed from the attempt
// number alone, so it survives restarts: the attempt count lives in the
// outbox's delivery metadata, not in this process.
func (p Policy) Delay(attempt int) time.Duration {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     p.Initial,
		RandomizationFactor: p.Jitter,
		Multiplier:          p.Multiplier,
		MaxInterval:         p.MaxInterval,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	d := p.Initial
	for i := 0; i < attempt; i++ {
		d = b.NextBackOff()
	}
	// The library jitters the capped interval; the cap is a promise.
	return min(d, p.MaxInterval)
}

package retry_test

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/courierhq/courier/retry"
)

func TestDelayWithoutJitterFollowsTheExponentialSchedule(t *testing.T) {
	tests := []struct {
		name   string
		policy retry.Policy
		want   []time.Duration // want[i] is Delay(i+1)
	}{
		{
			name:   "doubling, capped at MaxInterval",
			policy: retry.Policy{Initial: time.Second, Multiplier: 2, MaxInterval: 10 * time.Second},
			want: []time.Duration{
				1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
				10 * time.Second, 10 * time.Second, 10 * time.Second,
			},
		},
		{
			name:   "fractional multiplier",
			policy: retry.Policy{Initial: 100 * time.Millisecond, Multiplier: 1.5, MaxInterval: time.Second},
			want: []time.Duration{
				100 * time.Millisecond, 150 * time.Millisecond, 225 * time.Millisecond,
				337500 * time.Microsecond, 506250 * time.Microsecond, 759375 * time.Microsecond,
				time.Second, time.Second,
			},
		},
		{
			name:   "multiplier 1 is a constant delay",
			policy: retry.Policy{Initial: 3 * time.Second, Multiplier: 1, MaxInterval: time.Minute},
			want:   []time.Duration{3 * time.Second, 3 * time.Second, 3 * time.Second, 3 * time.Second},
		},
		{
			name:   "MaxInterval equal to Initial",
			policy: retry.Policy{Initial: 5 * time.Second, Multiplier: 3, MaxInterval: 5 * time.Second},
			want:   []time.Duration{5 * time.Second, 5 * time.Second, 5 * time.Second},
		},
		{
			name:   "cap that is not a step of the schedule",
			policy: retry.Policy{Initial: time.Second, Multiplier: 10, MaxInterval: 45 * time.Second},
			want:   []time.Duration{time.Second, 10 * time.Second, 45 * time.Second, 45 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, want := range tt.want {
				attempt := i + 1
				if got := tt.policy.Delay(attempt); got != want {
					t.Errorf("Delay(%d) = %s, want %s", attempt, got, want)
				}
			}
		})
	}
}

func TestDelayDependsOnlyOnTheAttemptNumber(t *testing.T) {
	// The schedule must survive restarts: the same attempt number gives the
	// same delay whenever it is asked.
	p := retry.Policy{Initial: time.Second, Multiplier: 2, MaxInterval: time.Hour}
	for _, attempt := range []int{7, 1, 7, 3, 1, 3} {
		want := time.Second << (attempt - 1)
		if got := p.Delay(attempt); got != want {
			t.Errorf("Delay(%d) = %s, want %s", attempt, got, want)
		}
	}
}

func TestDelayGrowsUntilMaxIntervalAndStaysThere(t *testing.T) {
	p := retry.DefaultPolicy()
	p.Jitter = 0
	prev := time.Duration(0)
	for attempt := 1; attempt <= 200; attempt++ {
		d := p.Delay(attempt)
		if d < prev {
			t.Fatalf("Delay(%d) = %s is shorter than Delay(%d) = %s", attempt, d, attempt-1, prev)
		}
		if d > p.MaxInterval {
			t.Fatalf("Delay(%d) = %s is above MaxInterval %s", attempt, d, p.MaxInterval)
		}
		prev = d
	}
	if prev != p.MaxInterval {
		t.Errorf("Delay(200) = %s, want MaxInterval %s", prev, p.MaxInterval)
	}
}

func TestDelayWithJitterStaysWithinTheJitterBounds(t *testing.T) {
	tests := []struct {
		name   string
		jitter float64
	}{
		{"20%", 0.2},
		{"50%", 0.5},
		{"100%", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := retry.Policy{Initial: time.Second, Multiplier: 2, MaxInterval: time.Minute, Jitter: tt.jitter}
			exact := p
			exact.Jitter = 0
			for attempt := 1; attempt <= 10; attempt++ {
				base := exact.Delay(attempt)
				lo := time.Duration(float64(base) * (1 - tt.jitter))
				hi := time.Duration(float64(base)*(1+tt.jitter)) + 1 // +1ns: the library rounds up the range
				distinct := map[time.Duration]bool{}
				for range 200 {
					d := p.Delay(attempt)
					if d < lo || d > hi {
						t.Fatalf("Delay(%d) = %s, want within [%s, %s]", attempt, d, lo, hi)
					}
					distinct[d] = true
				}
				if len(distinct) < 2 {
					t.Errorf("Delay(%d) gave the same value 200 times with jitter %g: jitter is not applied", attempt, tt.jitter)
				}
			}
		})
	}
}

func TestDelayWithJitterNeverExceedsMaxInterval(t *testing.T) {
	p := retry.Policy{Initial: time.Second, Multiplier: 2, MaxInterval: 10 * time.Second, Jitter: 0.5}
	for attempt := 1; attempt <= 20; attempt++ {
		for range 100 {
			if d := p.Delay(attempt); d > p.MaxInterval {
				t.Fatalf("Delay(%d) = %s, above MaxInterval %s", attempt, d, p.MaxInterval)
			}
		}
	}
}

func TestDefaultPolicyRetriesForAboutThreeDays(t *testing.T) {
	p := retry.DefaultPolicy()
	p.Jitter = 0
	var total time.Duration
	for attempt := 1; attempt < p.MaxAttempts; attempt++ {
		total += p.Delay(attempt)
	}
	if total < 48*time.Hour || total > p.MaxAge {
		t.Errorf("the default schedule waits %s over %d attempts, want about three days (MaxAge %s)",
			total, p.MaxAttempts, p.MaxAge)
	}
}

func TestDefaultPolicyIsValid(t *testing.T) {
	if err := retry.DefaultPolicy().Validate(); err != nil {
		t.Fatalf("DefaultPolicy().Validate() = %v", err)
	}
}

func TestWithDefaults(t *testing.T) {
	d := retry.DefaultPolicy()
	tests := []struct {
		name string
		in   retry.Policy
		want retry.Policy
	}{
		{"zero policy becomes the default", retry.Policy{}, d},
		{
			"set fields are kept",
			retry.Policy{Initial: 5 * time.Second, Multiplier: 3, MaxInterval: time.Hour, MaxAttempts: 4, MaxAge: time.Hour, Jitter: 0.5},
			retry.Policy{Initial: 5 * time.Second, Multiplier: 3, MaxInterval: time.Hour, MaxAttempts: 4, MaxAge: time.Hour, Jitter: 0.5},
		},
		{
			"only the zero fields are filled",
			retry.Policy{MaxAttempts: 3, MaxAge: time.Minute},
			retry.Policy{Initial: d.Initial, Multiplier: d.Multiplier, MaxInterval: d.MaxInterval, MaxAttempts: 3, MaxAge: time.Minute, Jitter: d.Jitter},
		},
		{
			"another subset",
			retry.Policy{Initial: 2 * time.Second, Jitter: 0.1},
			retry.Policy{Initial: 2 * time.Second, Multiplier: d.Multiplier, MaxInterval: d.MaxInterval, MaxAttempts: d.MaxAttempts, MaxAge: d.MaxAge, Jitter: 0.1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.WithDefaults(); got != tt.want {
				t.Errorf("WithDefaults() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDefaultPolicyValues(t *testing.T) {
	want := retry.Policy{
		Initial: time.Second, Multiplier: 2, MaxInterval: 6 * time.Hour,
		MaxAttempts: 25, MaxAge: 72 * time.Hour, Jitter: 0.2,
	}
	if got := retry.DefaultPolicy(); got != want {
		t.Errorf("DefaultPolicy() = %+v, want %+v", got, want)
	}
}

func TestValidate(t *testing.T) {
	valid := retry.Policy{Initial: time.Second, Multiplier: 2, MaxInterval: time.Minute, MaxAttempts: 5, MaxAge: time.Hour, Jitter: 0.2}
	tests := []struct {
		name    string
		mutate  func(*retry.Policy)
		wantErr string // empty: valid
	}{
		{"valid", func(*retry.Policy) {}, ""},
		{"multiplier of exactly 1", func(p *retry.Policy) { p.Multiplier = 1 }, ""},
		{"max interval equal to initial", func(p *retry.Policy) { p.MaxInterval = p.Initial }, ""},
		{"a single attempt", func(p *retry.Policy) { p.MaxAttempts = 1 }, ""},
		{"no jitter", func(p *retry.Policy) { p.Jitter = 0 }, ""},
		{"full jitter", func(p *retry.Policy) { p.Jitter = 1 }, ""},
		{"zero initial", func(p *retry.Policy) { p.Initial = 0 }, "retry.initial"},
		{"negative initial", func(p *retry.Policy) { p.Initial = -time.Second }, "retry.initial"},
		{"zero multiplier", func(p *retry.Policy) { p.Multiplier = 0 }, "retry.multiplier"},
		{"shrinking multiplier", func(p *retry.Policy) { p.Multiplier = 0.5 }, "retry.multiplier"},
		{"max interval below initial", func(p *retry.Policy) { p.MaxInterval = 500 * time.Millisecond }, "retry.max_interval"},
		{"zero attempts", func(p *retry.Policy) { p.MaxAttempts = 0 }, "retry.max_attempts"},
		{"negative attempts", func(p *retry.Policy) { p.MaxAttempts = -1 }, "retry.max_attempts"},
		{"zero max age", func(p *retry.Policy) { p.MaxAge = 0 }, "retry.max_age"},
		{"negative max age", func(p *retry.Policy) { p.MaxAge = -time.Hour }, "retry.max_age"},
		{"negative jitter", func(p *retry.Policy) { p.Jitter = -0.1 }, "retry.jitter"},
		{"jitter above 1", func(p *retry.Policy) { p.Jitter = 1.5 }, "retry.jitter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := valid
			tt.mutate(&p)
			err := p.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("Validate() = nil, want an error about %s", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("Validate() = %q, want it to name %s", err, tt.wantErr)
			}
		})
	}
}

// "jitter: 0" turns jitter off; leaving it out takes the default. Any
// other key is refused, as everywhere else in the configuration.
func TestJitterZeroFromYAML(t *testing.T) {
	var off, unset retry.Policy
	if err := yaml.Unmarshal([]byte("initial: 1s\njitter: 0\n"), &off); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte("initial: 1s\n"), &unset); err != nil {
		t.Fatal(err)
	}
	if got := off.WithDefaults().Jitter; got != 0 {
		t.Errorf("jitter: 0 gave jitter %g, want 0", got)
	}
	if got := unset.WithDefaults().Jitter; got != retry.DefaultPolicy().Jitter {
		t.Errorf("no jitter key gave %g, want the default %g", got, retry.DefaultPolicy().Jitter)
	}
	for i := range 20 {
		if d := off.WithDefaults().Delay(1); d != time.Second {
			t.Fatalf("try %d: delay %s with jitter off, want exactly 1s", i, d)
		}
	}
	var typo retry.Policy
	err := yaml.Unmarshal([]byte("initial: 1s\njiter: 0.1\n"), &typo)
	if err == nil || !strings.Contains(err.Error(), `unknown key "jiter"`) {
		t.Errorf("a misspelled key: %v", err)
	}
}

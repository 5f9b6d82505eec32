package delivery_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/courierhq/courier/delivery"
	"github.com/courierhq/courier/retry"
)

// decidePolicy has no jitter, so Decide's delays are exact: 1s, 2s, 4s, ...
var decidePolicy = retry.Policy{
	Initial:     time.Second,
	Multiplier:  2,
	MaxInterval: time.Minute,
	MaxAttempts: 5,
	MaxAge:      time.Hour,
}

func TestDecide(t *testing.T) {
	stored := time.Date(2024, 7, 1, 12, 0, 0, 0, time.UTC)
	transient := errors.New("connection refused")
	retryAfter := func(d time.Duration) error {
		return &retry.Error{Kind: retry.Retryable, Status: 503, RetryAfter: d, Err: errors.New("busy")}
	}
	tests := []struct {
		name       string
		attempt    int
		age        time.Duration // now - stored
		err        error
		want       delivery.Action
		wantDelay  time.Duration // checked for Retry
		wantReason string        // part of the reason, checked for DeadLetter
	}{
		{name: "success is acknowledged", attempt: 1, age: time.Second, err: nil, want: delivery.Ack},
		{name: "success on the last attempt is acknowledged", attempt: 5, age: time.Second, err: nil, want: delivery.Ack},
		{name: "success past max age is acknowledged", attempt: 3, age: 2 * time.Hour, err: nil, want: delivery.Ack},

		{name: "permanent failure on the first attempt is dead-lettered", attempt: 1, age: 0,
			err: retry.NewPermanent(errors.New("400")), want: delivery.DeadLetter, wantReason: "permanent"},
		{name: "wrapped permanent failure is dead-lettered", attempt: 1, age: 0,
			err: fmt.Errorf("sink: %w", retry.NewPermanent(errors.New("410"))), want: delivery.DeadLetter, wantReason: "permanent"},
		{name: "permanent failure with a Retry-After is still dead-lettered", attempt: 1, age: 0,
			err: &retry.Error{Kind: retry.Permanent, RetryAfter: time.Minute, Err: errors.New("x")}, want: delivery.DeadLetter, wantReason: "permanent"},

		{name: "first retryable failure waits Initial", attempt: 1, age: time.Second,
			err: retry.NewRetryable(transient), want: delivery.Retry, wantDelay: time.Second},
		{name: "third retryable failure waits Initial*Multiplier^2", attempt: 3, age: time.Minute,
			err: retry.NewRetryable(transient), want: delivery.Retry, wantDelay: 4 * time.Second},
		{name: "failure before the last attempt is retried", attempt: 4, age: time.Minute,
			err: retry.NewRetryable(transient), want: delivery.Retry, wantDelay: 8 * time.Second},
		{name: "unclassified error is retried", attempt: 2, age: time.Minute,
			err: transient, want: delivery.Retry, wantDelay: 2 * time.Second},
		{name: "wrapped unclassified error is retried", attempt: 2, age: time.Minute,
			err: fmt.Errorf("post: %w", transient), want: delivery.Retry, wantDelay: 2 * time.Second},

		{name: "failure of the last attempt is dead-lettered", attempt: 5, age: time.Minute,
			err: retry.NewRetryable(transient), want: delivery.DeadLetter, wantReason: "max_attempts (5)"},
		{name: "failure past the last attempt is dead-lettered", attempt: 9, age: time.Minute,
			err: transient, want: delivery.DeadLetter, wantReason: "max_attempts"},
		{name: "failure of the last attempt with a Retry-After is dead-lettered", attempt: 5, age: time.Minute,
			err: retryAfter(time.Second), want: delivery.DeadLetter, wantReason: "max_attempts"},

		{name: "failure just before max age is retried", attempt: 2, age: time.Hour - time.Minute,
			err: transient, want: delivery.Retry, wantDelay: 2 * time.Second},
		{name: "failure at exactly max age is dead-lettered", attempt: 2, age: time.Hour,
			err: transient, want: delivery.DeadLetter, wantReason: "max_age (1h0m0s)"},
		{name: "failure past max age is dead-lettered", attempt: 1, age: 3 * time.Hour,
			err: retry.NewRetryable(transient), want: delivery.DeadLetter, wantReason: "max_age"},

		{name: "Retry-After longer than the backoff is honoured", attempt: 1, age: time.Minute,
			err: retryAfter(30 * time.Second), want: delivery.Retry, wantDelay: 30 * time.Second},
		{name: "wrapped Retry-After is honoured", attempt: 2, age: time.Minute,
			err: fmt.Errorf("deliver: %w", retryAfter(45*time.Second)), want: delivery.Retry, wantDelay: 45 * time.Second},
		{name: "Retry-After shorter than the backoff keeps the backoff", attempt: 4, age: time.Minute,
			err: retryAfter(2 * time.Second), want: delivery.Retry, wantDelay: 8 * time.Second},
		{name: "Retry-After equal to the backoff", attempt: 3, age: time.Minute,
			err: retryAfter(4 * time.Second), want: delivery.Retry, wantDelay: 4 * time.Second},
		{name: "Retry-After beyond the deadline is cut at the deadline", attempt: 1, age: 50 * time.Minute,
			err: retryAfter(2 * time.Hour), want: delivery.Retry, wantDelay: 10 * time.Minute},
		{name: "Retry-After ending exactly at the deadline is honoured", attempt: 1, age: 50 * time.Minute,
			err: retryAfter(10 * time.Minute), want: delivery.Retry, wantDelay: 10 * time.Minute},
		{name: "Retry-After beyond the deadline, close to it, waits for the deadline", attempt: 2, age: time.Hour - 3*time.Second,
			err: retryAfter(time.Minute), want: delivery.Retry, wantDelay: 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := delivery.Decide(decidePolicy, tt.attempt, stored, stored.Add(tt.age), tt.err)
			if got.Action != tt.want {
				t.Fatalf("Decide = %+v (%s), want %s", got, got.Action, tt.want)
			}
			switch tt.want {
			case delivery.Retry:
				if got.Delay != tt.wantDelay {
					t.Errorf("Delay = %s, want %s", got.Delay, tt.wantDelay)
				}
			case delivery.DeadLetter:
				if !strings.Contains(got.Reason, tt.wantReason) {
					t.Errorf("Reason = %q, want it to contain %q", got.Reason, tt.wantReason)
				}
			case delivery.Ack:
				if got.Delay != 0 || got.Reason != "" {
					t.Errorf("Ack decision carries Delay %s, Reason %q", got.Delay, got.Reason)
				}
			}
		})
	}
}

func TestDecideRetryDelayIsThePolicyDelay(t *testing.T) {
	// With the default (jittered) policy, a retry waits what the policy says
	// for that attempt, within the jitter bounds.
	p := retry.DefaultPolicy()
	exact := p
	exact.Jitter = 0
	stored := time.Date(2024, 7, 1, 12, 0, 0, 0, time.UTC)
	for attempt := 1; attempt < p.MaxAttempts; attempt++ {
		got := delivery.Decide(p, attempt, stored, stored.Add(time.Minute), errors.New("timeout"))
		if got.Action != delivery.Retry {
			t.Fatalf("attempt %d: Decide = %s, want retry", attempt, got.Action)
		}
		base := exact.Delay(attempt)
		lo := time.Duration(float64(base) * (1 - p.Jitter))
		hi := time.Duration(float64(base)*(1+p.Jitter)) + 1
		if got.Delay < lo || got.Delay > hi {
			t.Errorf("attempt %d: Delay = %s, want within [%s, %s]", attempt, got.Delay, lo, hi)
		}
	}
}

func TestDecideRetryAfterNeverShortensTheBackoff(t *testing.T) {
	stored := time.Date(2024, 7, 1, 12, 0, 0, 0, time.UTC)
	now := stored.Add(time.Hour - 3*time.Second)
	without := delivery.Decide(decidePolicy, 4, stored, now, retry.NewRetryable(errors.New("busy")))
	with := delivery.Decide(decidePolicy, 4, stored, now,
		&retry.Error{Kind: retry.Retryable, Status: 503, RetryAfter: 30 * time.Second, Err: errors.New("busy")})
	if with.Action != delivery.Retry || without.Action != delivery.Retry {
		t.Fatalf("Decide = %s and %s, want retry", with.Action, without.Action)
	}
	if with.Delay < without.Delay {
		t.Errorf("with Retry-After 30s the delay is %s, shorter than %s without it", with.Delay, without.Delay)
	}
}

func TestActionString(t *testing.T) {
	tests := []struct {
		a    delivery.Action
		want string
	}{
		{delivery.Ack, "delivered"},
		{delivery.Retry, "retry"},
		{delivery.DeadLetter, "dead-letter"},
	}
	for _, tt := range tests {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("Action(%d).String() = %q, want %q", tt.a, got, tt.want)
		}
	}
}

func TestDecidePullsTheLastAttemptInToTheDeadline(t *testing.T) {
	p := retry.Policy{Initial: time.Hour, Multiplier: 2, MaxInterval: time.Hour, MaxAttempts: 10, MaxAge: time.Minute}
	stored := time.Date(2024, 7, 1, 12, 0, 0, 0, time.UTC)
	got := delivery.Decide(p, 1, stored, stored.Add(20*time.Second), retry.NewRetryable(errors.New("down")))
	if got.Action != delivery.Retry || got.Delay != 40*time.Second {
		t.Fatalf("Decide = %s after %s, want a retry at the deadline (40s)", got.Action, got.Delay)
	}
	got = delivery.Decide(p, 2, stored, stored.Add(time.Minute), retry.NewRetryable(errors.New("down")))
	if got.Action != delivery.DeadLetter {
		t.Fatalf("at the deadline Decide = %s, want dead-letter", got.Action)
	}
}

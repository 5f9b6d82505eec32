package delivery

import (
	"fmt"
	"net/http"
	"time"

	"github.com/courierhq/courier/retry"
)

// Action is what the loop does with an event after an attempt.
type Action int

// Actions.
const (
	Ack Action = iota
	Retry
	DeadLetter
	// Disable stops the sink until an operator enables it again; the event
	// stays in the outbox.
	Disable
)

func (a Action) String() string {
	return [...]string{"delivered", "retry", "dead-letter", "disable"}[a]
}

// Decision is the outcome of one attempt.
type Decision struct {
	Action Action
	// Delay before the next attempt (Retry only).
	Delay time.Duration
	// Reason for a dead letter.
	Reason string
	// Exhausted: dead-lettered for running out of attempts (max_attempts).
	Exhausted bool
}

// Decide is the single place where Courier chooses between acknowledging,
// retrying and dead-lettering an event, from the attempt that just ended
// (1 for the first), when the event was stored and the sink's error.
func Decide(p retry.Policy, attempt int, stored, now time.Time, err error) Decision {
	if err == nil {
		return Decision{Action: Ack}
	}
	ce := retry.Classify(err)
	switch {
	case ce.Status == http.StatusGone:
		// The receiver says the endpoint is gone for good: stop sending
		// there rather than dead-letter everything that follows.
		return Decision{Action: Disable, Reason: "endpoint answered 410 Gone"}
	case ce.Kind == retry.Permanent:
		return Decision{Action: DeadLetter, Reason: "permanent failure"}
	case attempt >= p.MaxAttempts:
		return Decision{Action: DeadLetter, Reason: fmt.Sprintf("gave up after max_attempts (%d)", p.MaxAttempts), Exhausted: true}
	case now.Sub(stored) >= p.MaxAge:
		return Decision{Action: DeadLetter, Reason: fmt.Sprintf("gave up after max_age (%s)", p.MaxAge)}
	}
	delay := max(p.Delay(attempt), ce.RetryAfter)
	// The last attempt happens at the event's deadline, not after it: the
	// event is then dead-lettered while the outbox still holds it.
	if left := stored.Add(p.MaxAge).Sub(now); delay > left {
		delay = left
	}
	return Decision{Action: Retry, Delay: delay}
}

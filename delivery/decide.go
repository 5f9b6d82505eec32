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

// Decide chooses between acknowledging, retrying, dead-lettering and
// disabling, from the attempt that just ended (1 for the first), when the
// event was stored and the sink's error. It and the functions below it in
// this file are every such choice the loop makes: what an attempt made
// during an outage changes, when a retry waits in place or moves to the
// end of the outbox, and when an event whose dead letter could not be
// stored is tried again.
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

// duringOutage revises d for an attempt made while the sink's circuit was
// open (a probe, or one under way when it opened): its failure says
// nothing about the event, so running out of attempts does not
// dead-letter it. Only max_age may give up on it while the endpoint is
// down; until then it is retried at most max_interval apart.
func duringOutage(p retry.Policy, d Decision, stored, now time.Time) Decision {
	if !d.Exhausted {
		return d
	}
	return Decision{Action: Retry, Delay: min(p.MaxInterval, max(stored.Add(p.MaxAge).Sub(now), time.Millisecond))}
}

// deadLetterUnstored is when to try again an event whose dead letter could
// not be stored: it stays in the outbox, not acknowledged, and is
// dead-lettered by a later attempt.
func deadLetterUnstored(p retry.Policy, attempt int) time.Duration { return p.Delay(attempt) }

// retryInPlace reports whether a retry due after delay waits at the
// event's own outbox position (JetStream redelivers it then) rather than
// moving to the end of the outbox: only a short wait does, and never for
// an event already moved, whose attempt count lives in its headers.
func retryInPlace(parked bool, delay, parkAfter time.Duration) bool {
	return !parked && delay <= parkAfter
}

// earlyWait is what to do with a moved event fetched before its attempt is
// due, wait from now: its first delivery at the new position waits there
// (at most parkAfter, so it holds back trimming no longer than that);
// after that it moves to the end again. inPlace false means move it.
func earlyWait(numDelivered uint64, wait, parkAfter time.Duration) (inPlace bool, delay time.Duration) {
	return numDelivered == 1, min(wait, parkAfter)
}

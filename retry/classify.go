package retry

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Kind says what a failed attempt means for the event.
type Kind int

const (
	// Retryable failures may succeed later: timeouts, refused connections,
	// 5xx, 429.
	Retryable Kind = iota
	// Permanent failures will fail again however often they are retried:
	// most 4xx, a redirect that is not followed, an event the peer rejects.
	Permanent
)

func (k Kind) String() string {
	if k == Permanent {
		return "permanent"
	}
	return "retryable"
}

// Error is a classified delivery failure, as sinks return it.
type Error struct {
	Kind Kind
	// RetryAfter is the delay the peer asked for (HTTP Retry-After); zero
	// when it did not ask.
	RetryAfter time.Duration
	// Status is the peer's status code, when it has one (HTTP).
	Status int
	// Response is a capped excerpt of the peer's answer, for the dead-letter
	// record and the logs.
	Response string
	Err      error
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("%s failure (status %d): %v", e.Kind, e.Status, e.Err)
	}
	return fmt.Sprintf("%s failure: %v", e.Kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// NewPermanent marks err as not worth retrying.
func NewPermanent(err error) *Error { return &Error{Kind: Permanent, Err: err} }

// NewRetryable marks err as worth retrying.
func NewRetryable(err error) *Error { return &Error{Kind: Retryable, Err: err} }

// Classify returns the classification of err. An error a sink did not
// classify is treated as retryable: losing an event to a misjudged transient
// failure is worse than retrying a hopeless one until it is dead-lettered.
func Classify(err error) *Error {
	var ce *Error
	if errors.As(err, &ce) {
		return ce
	}
	return NewRetryable(err)
}

// KindForHTTPStatus classifies a non-2xx HTTP status. 408, 425, 429 and 5xx
// may pass; other 4xx and every 3xx (redirects are not followed) will not.
func KindForHTTPStatus(code int) Kind {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests:
		return Retryable
	case code >= 500:
		return Retryable
	}
	return Permanent
}

const maxRetryAfterSeconds = 365 * 24 * 3600

// ParseRetryAfter reads an HTTP Retry-After value (seconds or an HTTP date)
// relative to now. It returns zero for an absent or unreadable value, and
// never a negative delay.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0
		}
		// Past a year the value is nonsense; cap it (also keeps the
		// multiplication below from overflowing).
		return time.Duration(min(secs, maxRetryAfterSeconds)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, maxRetryAfterSeconds*time.Second)
		}
	}
	return 0
}

package retry_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/courierhq/courier/retry"
)

func TestKindForHTTPStatus(t *testing.T) {
	tests := []struct {
		code int
		want retry.Kind
	}{
		{http.StatusRequestTimeout, retry.Retryable},      // 408
		{http.StatusTooEarly, retry.Retryable},            // 425
		{http.StatusTooManyRequests, retry.Retryable},     // 429
		{http.StatusInternalServerError, retry.Retryable}, // 500
		{http.StatusNotImplemented, retry.Retryable},      // 501
		{http.StatusBadGateway, retry.Retryable},          // 502
		{http.StatusServiceUnavailable, retry.Retryable},  // 503
		{http.StatusGatewayTimeout, retry.Retryable},      // 504
		{599, retry.Retryable},
		{http.StatusBadRequest, retry.Permanent},            // 400
		{http.StatusUnauthorized, retry.Permanent},          // 401
		{http.StatusForbidden, retry.Permanent},             // 403
		{http.StatusNotFound, retry.Permanent},              // 404
		{http.StatusMethodNotAllowed, retry.Permanent},      // 405
		{http.StatusConflict, retry.Permanent},              // 409
		{http.StatusGone, retry.Permanent},                  // 410
		{http.StatusRequestEntityTooLarge, retry.Permanent}, // 413
		{http.StatusUnprocessableEntity, retry.Permanent},   // 422
		{http.StatusMultipleChoices, retry.Permanent},       // 300
		{http.StatusMovedPermanently, retry.Permanent},      // 301
		{http.StatusFound, retry.Permanent},                 // 302
		{http.StatusSeeOther, retry.Permanent},              // 303
		{http.StatusNotModified, retry.Permanent},           // 304
		{http.StatusTemporaryRedirect, retry.Permanent},     // 307
		{http.StatusPermanentRedirect, retry.Permanent},     // 308
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			if got := retry.KindForHTTPStatus(tt.code); got != tt.want {
				t.Errorf("KindForHTTPStatus(%d) = %s, want %s", tt.code, got, tt.want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 7, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		v    string
		want time.Duration
	}{
		{"seconds", "7", 7 * time.Second},
		{"zero seconds", "0", 0},
		{"many seconds", "86400", 24 * time.Hour},
		{"seconds with surrounding space", "  120 ", 2 * time.Minute},
		{"HTTP date in the future", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"HTTP date written by hand", "Mon, 01 Jul 2024 12:05:00 GMT", 5 * time.Minute},
		{"RFC 850 date", "Monday, 01-Jul-24 12:00:30 GMT", 30 * time.Second},
		{"ANSI C date", "Mon Jul  1 12:00:10 2024", 10 * time.Second},
		{"HTTP date now", now.Format(http.TimeFormat), 0},
		{"HTTP date in the past", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"empty", "", 0},
		{"blank", "   ", 0},
		{"negative seconds", "-5", 0},
		{"fractional seconds", "1.5", 0},
		{"garbage", "soon", 0},
		{"seconds with a unit", "7s", 0},
		{"malformed date", "Mon, 32 Jul 2024 12:00:00 GMT", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retry.ParseRetryAfter(tt.v, now); got != tt.want {
				t.Errorf("ParseRetryAfter(%q) = %s, want %s", tt.v, got, tt.want)
			}
		})
	}
}

func TestParseRetryAfterIsNeverNegativeForHugeSeconds(t *testing.T) {
	now := time.Date(2024, 7, 1, 12, 0, 0, 0, time.UTC)
	for _, v := range []string{"9223372037", "18446744073", "99999999999"} {
		if got := retry.ParseRetryAfter(v, now); got < 0 {
			t.Errorf("ParseRetryAfter(%q) = %s, want a non-negative delay", v, got)
		}
	}
}

func TestClassifyTreatsUnclassifiedErrorsAsRetryable(t *testing.T) {
	for _, err := range []error{
		errors.New("connection refused"),
		io.ErrUnexpectedEOF,
		fmt.Errorf("post: %w", io.EOF),
	} {
		t.Run(err.Error(), func(t *testing.T) {
			ce := retry.Classify(err)
			if ce == nil {
				t.Fatal("Classify returned nil")
			}
			if ce.Kind != retry.Retryable {
				t.Errorf("Kind = %s, want retryable", ce.Kind)
			}
			if !errors.Is(ce, err) {
				t.Errorf("the classified error %v does not wrap the original %v", ce, err)
			}
			if ce.RetryAfter != 0 || ce.Status != 0 {
				t.Errorf("an unclassified error got RetryAfter %s, Status %d", ce.RetryAfter, ce.Status)
			}
		})
	}
}

func TestClassifyFindsAClassificationThroughWrapping(t *testing.T) {
	cause := errors.New("bad request")
	permanent := &retry.Error{Kind: retry.Permanent, Status: 400, Response: "nope", Err: cause}
	retryable := &retry.Error{Kind: retry.Retryable, Status: 503, RetryAfter: 7 * time.Second, Err: cause}
	tests := []struct {
		name string
		err  error
		want *retry.Error
	}{
		{"permanent itself", permanent, permanent},
		{"permanent wrapped once", fmt.Errorf("deliver: %w", permanent), permanent},
		{"permanent wrapped twice", fmt.Errorf("sink a: %w", fmt.Errorf("deliver: %w", permanent)), permanent},
		{"permanent joined with another error", errors.Join(errors.New("other"), permanent), permanent},
		{"retryable with Retry-After wrapped", fmt.Errorf("deliver: %w", retryable), retryable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := retry.Classify(tt.err)
			if got != tt.want {
				t.Fatalf("Classify = %#v, want the sink's own *retry.Error %#v", got, tt.want)
			}
			var ce *retry.Error
			if !errors.As(tt.err, &ce) || ce != tt.want {
				t.Errorf("errors.As did not find the *retry.Error")
			}
			if !errors.Is(tt.err, cause) {
				t.Errorf("errors.Is does not reach the cause through the *retry.Error")
			}
		})
	}
}

func TestNewPermanentAndNewRetryable(t *testing.T) {
	cause := errors.New("boom")
	if e := retry.NewPermanent(cause); e.Kind != retry.Permanent || !errors.Is(e, cause) {
		t.Errorf("NewPermanent = %#v, want a permanent error wrapping the cause", e)
	}
	if e := retry.NewRetryable(cause); e.Kind != retry.Retryable || !errors.Is(e, cause) {
		t.Errorf("NewRetryable = %#v, want a retryable error wrapping the cause", e)
	}
	if got := retry.Classify(fmt.Errorf("x: %w", retry.NewPermanent(cause))).Kind; got != retry.Permanent {
		t.Errorf("Classify of a wrapped NewPermanent = %s, want permanent", got)
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		err  *retry.Error
		want string
	}{
		{"with status", &retry.Error{Kind: retry.Retryable, Status: 503, Err: errors.New("webhook answered 503")},
			"retryable failure (status 503): webhook answered 503"},
		{"without status", &retry.Error{Kind: retry.Permanent, Err: errors.New("bad body")},
			"permanent failure: bad body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
	if !strings.Contains(retry.Retryable.String(), "retryable") || retry.Permanent.String() != "permanent" {
		t.Errorf("Kind strings = %q, %q", retry.Retryable, retry.Permanent)
	}
}

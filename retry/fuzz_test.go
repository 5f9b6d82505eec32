package retry_test

import (
	"testing"
	"time"

	"github.com/courierhq/courier/retry"
)

// FuzzParseRetryAfter: whatever a receiver sends, the wait is between
// zero and a year, and parsing never panics.
func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for _, s := range []string{"120", "0", "-5", " 7 ", "Wed, 02 Dec 2026 10:05:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "9223372036854775807", "soon", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d := retry.ParseRetryAfter(v, now)
		if d < 0 || d > 366*24*time.Hour {
			t.Errorf("ParseRetryAfter(%q) = %s, want 0 to a year", v, d)
		}
	})
}

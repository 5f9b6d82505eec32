package config

import (
	"fmt"
	"time"
)

// Bounds of the durations and sizes, each checked once in Validate. Zero
// means "the default" and is filled in before; anything else outside its
// range is refused here, with the setting's name, instead of failing later
// as a raw error of the outbox or the HTTP server.
const (
	century     = 100 * 365 * 24 * time.Hour
	maxEventCap = 64 << 20
)

type durationRange struct {
	setting  string
	value    time.Duration
	min, max time.Duration
}

type sizeRange struct {
	setting  string
	value    ByteSize
	min, max ByteSize
}

func (f *File) checkRanges() error {
	for _, r := range []durationRange{
		{"outbox.max_age", f.Outbox.MaxAge, time.Second, century},
		{"outbox.duplicate_window", f.Outbox.DuplicateWindow, time.Second, century},
		{"outbox.dead_letter_max_age", f.Outbox.DeadLetterMaxAge, time.Second, century},
		{"shutdown_timeout", f.ShutdownTimeout, time.Second, time.Hour},
		{"event_log.max_lag", f.EventLog.MaxLag, time.Minute, century},
		{"ingest.timeout", f.Ingest.Timeout, time.Second, time.Hour},
	} {
		if r.value < r.min || r.value > r.max {
			return fmt.Errorf("%s %s: want a duration from %s to %s", r.setting, r.value, r.min, r.max)
		}
	}
	for _, r := range []sizeRange{
		{"outbox.max_bytes", f.Outbox.MaxBytes, 1 << 20, 1 << 50},
		{"outbox.max_event_size", f.Outbox.MaxEventSize, 1 << 10, maxEventCap},
		// Below 1MiB it holds only a few thousand attempts.
		{"outbox.attempt_log_max_bytes", f.Outbox.AttemptLogMaxBytes, 1 << 20, 1 << 40},
		{"ingest.max_body_bytes", f.Ingest.MaxBodyBytes, 1 << 10, 1 << 30},
	} {
		if r.value < r.min || r.value > r.max {
			return fmt.Errorf("%s %d: want a size from %s to %s", r.setting, r.value, r.min, r.max)
		}
	}
	return nil
}

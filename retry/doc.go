// Package retry holds Courier's backoff policy and its error classification.
// It computes (how long to wait, whether an error is worth retrying); the
// delivery loop decides what to do with that. It does no I/O.
package retry

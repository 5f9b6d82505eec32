package outbox

import "errors"

// Sentinel errors, compared with errors.Is.
var (
	// ErrUnreachable: no NATS server answered at the outbox URL.
	ErrUnreachable = errors.New("outbox unreachable")
	// ErrFull: the outbox reached max_bytes or max_events of undelivered
	// events and rejects new ones rather than dropping old ones.
	ErrFull = errors.New("outbox full")
	// ErrTooLarge: the encoded event exceeds the configured maximum size.
	ErrTooLarge = errors.New("event too large")
	// ErrNoAck: the outbox did not acknowledge in time; the event may or may
	// not be stored, and emitting it again with the same id is safe.
	ErrNoAck = errors.New("no acknowledgement from outbox")
	// ErrNoStream: the server answered but has no outbox stream (the worker
	// has not set it up).
	ErrNoStream = errors.New("outbox stream not found")
	// ErrUnavailable: the outbox answered but cannot store events right now
	// (JetStream temporarily unavailable, no stream leader, the stream
	// offline: a node cut off from its cluster's quorum); later it can.
	ErrUnavailable = errors.New("outbox temporarily unavailable")
	// ErrClosed: the publisher was closed.
	ErrClosed = errors.New("publisher closed")
	// ErrSpooled: the outbox could not take the event, so it is stored in the
	// local spool (fsynced) and will be sent, with the same id, once the
	// outbox is reachable. Do not emit it again with a new id: that would
	// store it twice. The error also wraps the cause.
	ErrSpooled = errors.New("event spooled locally, to be sent later")

	// errBatchHasDuplicate: JetStream refused a whole atomic batch because
	// one of its ids is already stored (a re-emitted event).
	errBatchHasDuplicate = errors.New("atomic batch holds an id already stored")
	// errBatchesBusy: too many atomic batches in flight on the stream.
	errBatchesBusy = errors.New("too many atomic batches in flight")
)

// Package delivery runs one loop per sink: it fetches events from the sink's
// durable consumer, filters them, calls the sink with bounded concurrency and
// decides, in one place, whether to acknowledge, retry later (a delayed nak,
// so the schedule lives in JetStream and survives restarts) or dead-letter.
// It knows no sink's protocol.
package delivery

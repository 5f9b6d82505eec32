// Package console serves Courier's web console: the operator's view of the
// cluster's nodes, sinks, dead letters, event log and settings, with the
// few actions an on-call engineer takes from it (test, disable or enable a
// sink, replay dead letters, archive or delete events, change a setting).
//
// Pages are rendered on the server from templates embedded in the binary;
// a small script refreshes the overview and asks for confirmations. The
// console holds no state of its own besides sign-in sessions: everything
// it shows and does goes through a Backend, which the worker implements
// over the outbox, the sink registry and the event log.
package console

import (
	"context"
	"errors"
	"time"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/eventlog"
	"github.com/courierhq/courier/outbox"
)

// ErrNotFound is what a Backend answers for a sink that does not exist.
var ErrNotFound = errors.New("not found")

// Caller is who signed in: the admin (Account empty) or an account, which
// sees only its account's events and no sinks or settings.
type Caller struct {
	Account string
}

// Admin reports whether the caller signed in with the admin token.
func (c Caller) Admin() bool { return c.Account == "" }

// Backend is what the console shows and does. Every method answers for the
// whole cluster, whichever node serves the console.
type Backend interface {
	// Authenticate tells who a token belongs to.
	Authenticate(token string) (Caller, bool)
	Overview(ctx context.Context) (Overview, error)
	// Sink returns one sink's page; ErrNotFound when no sink has the name.
	Sink(ctx context.Context, name string) (SinkPage, error)
	TestSink(ctx context.Context, name string) (TestOutcome, error)
	SetSinkDisabled(ctx context.Context, name string, disabled bool) error
	// DeadLetters lists a sink's dead letters, oldest first.
	DeadLetters(ctx context.Context, sink string) ([]outbox.DeadLetter, error)
	// Replay replays the sink's dead letters with these event ids (all
	// of them when ids is empty) and says how many it replayed.
	Replay(ctx context.Context, sink string, ids []string) (int, error)
	EventLog(ctx context.Context, req eventlog.Request) eventlog.Response
	Settings(ctx context.Context) ([]Setting, error)
	SetSetting(ctx context.Context, name, value string) error
	ResetSetting(ctx context.Context, name string) error
}

// Overview is the cluster at a glance.
type Overview struct {
	Nodes  []Node
	Sinks  []Sink
	Outbox OutboxState
	// RateWindow is the span the sinks' rates are measured over.
	RateWindow time.Duration
	// RatesKnown is false with the event log off: rates come from it.
	RatesKnown bool
}

// Node is one node's last heartbeat.
type Node struct {
	Name        string
	Up          bool
	Stopped     bool // stopped cleanly
	LastSeen    time.Duration
	Version     string
	EventLogLag *int64 // nil: the node keeps no event log
}

// Sink is one sink's row in the overview.
type Sink struct {
	Name, Kind string
	// Target is where it delivers, without credentials.
	Target      string
	State       string // enabled, disabled: <reason>, circuit open on <nodes>
	Pending     uint64
	InFlight    int
	DeadLetters uint64
	// Delivered and Failed count attempts over the overview's RateWindow
	// (failed: retried or dead-lettered).
	Delivered, Failed int64
	LastError         string
	// Problem is set when the definition does not apply on this node.
	Problem string
}

// OutboxState is the outbox's size and the age of its oldest event.
type OutboxState struct {
	Events    uint64
	Bytes     uint64
	OldestAge time.Duration
}

// SinkPage is one sink in detail.
type SinkPage struct {
	Sink
	// Definition is the sink as defined, every credential redacted.
	Definition string
	Origin     string
	Updated    string
	Disabled   bool
	// Attempts are its latest attempts on every node, newest first
	// (empty with the event log off).
	Attempts []event.Attempt
	// LogOff is set when the node keeps no event log to read them from.
	LogOff bool
}

// TestOutcome is the answer of a sink to a test event.
type TestOutcome struct {
	EventID string
	Took    time.Duration
	// Error, when set, is why the sink refused it, and Kind how the
	// failure classifies (transient, permanent).
	Error, Kind string
}

// Setting is one run-time setting.
type Setting struct {
	Name, Description, Value string
	Set                      bool // overridden (else the configuration's or the default)
}

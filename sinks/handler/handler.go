// Package handler delivers events to a Go function of the program that
// embeds the worker: CloudStack's in-memory event bus, but behind the
// outbox, so the function gets what every sink gets: the event survives a
// crash, failures are retried with backoff and end as dead letters, events
// of one key arrive in order (ordering: key), and each call runs inside
// the delivery's trace.
//
// The program registers its functions by name in the kind it passes to the
// configuration (NewKind); a sink of type handler names one. A worker whose
// program did not register that name refuses to start when the sink is in
// its own file, and logs the sink as not applying there (delivering
// nothing to it) when another node defined it. worker sinks test and the
// console's test button do not call the function: a synthetic test event
// would reach the program's own code.
//
// What the function returns decides: nil is delivered; an error made with
// retry.NewPermanent is dead-lettered at once; any other error is retried.
// A panic is recovered and dead-lettered: it is a bug that the same event
// would hit again, and replaying the dead letter after the fix delivers it.
package handler

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/retry"
)

// Func handles one event. It gets a copy: changing it changes nothing
// stored. ctx ends when the attempt's timeout passes or the worker stops,
// and the function must then return: until it does, it holds one of the
// sink's concurrency slots.
type Func func(ctx context.Context, e event.Envelope) error

// Config is a handler sink's own part of its configuration.
type Config struct {
	// Handler names the function, as the program registered it.
	Handler string `yaml:"handler"`
	// Timeout bounds one call: ctx is cancelled then.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultTimeout bounds a call when the configuration does not.
const DefaultTimeout = 15 * time.Second

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// WithDefaults fills the optional fields.
func (c Config) WithDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if !namePattern.MatchString(c.Handler) {
		return fmt.Errorf("handler %q: name the function the program registered (1 to 64 letters, digits, '.', '_' or '-')", c.Handler)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("timeout must be positive, got %s", c.Timeout)
	}
	return nil
}

// Target names the function.
func (c Config) Target() string { return "handler " + c.Handler }

// AttemptTimeout is the timeout: one call takes no longer.
func (c Config) AttemptTimeout() time.Duration { return c.Timeout }

// ErrNotRegistered is New's error when the program registered no function
// by the configured name.
var ErrNotRegistered = errors.New("no such handler registered in this program")

// Sink calls a Func.
type Sink struct {
	cfg    Config
	fn     Func
	tracer trace.Tracer // nil: no spans
}

// Option adjusts a Sink.
type Option func(*Sink)

// WithTracerProvider records a span per call.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(s *Sink) { s.tracer = tp.Tracer("github.com/courierhq/courier/sinks/handler") }
}

// New validates cfg and returns a sink calling fn (nil: the program did
// not register cfg.Handler).
func New(cfg Config, fn Func, opts ...Option) (*Sink, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("handler sink: %w", err)
	}
	if fn == nil {
		return nil, fmt.Errorf("handler sink: %q: %w (register it: handler.NewKind(handler.Funcs{%q: fn}) in the kinds given to config.Parse)", cfg.Handler, ErrNotRegistered, cfg.Handler)
	}
	s := &Sink{cfg: cfg, fn: fn}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Send calls the function with a copy of e (Data included).
func (s *Sink) Send(ctx context.Context, e *event.Envelope) (err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if s.tracer != nil {
		var span trace.Span
		ctx, span = s.tracer.Start(ctx, "handler "+s.cfg.Handler, trace.WithAttributes(
			attribute.String("courier.event.id", e.ID), attribute.String("courier.event.type", e.Type)))
		defer func() {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}()
	}
	if err = s.call(ctx, e.Clone()); err != nil {
		// Unclassified, it is retried (retry.Classify).
		return fmt.Errorf("handler %s: %w", s.cfg.Handler, err)
	}
	return nil
}

// call runs the function, turning a panic into a permanent failure that
// says where it panicked: the error is all the dead letter keeps of it.
func (s *Sink) call(ctx context.Context, e event.Envelope) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = retry.NewPermanent(fmt.Errorf("panic: %v (at %s)", p, panicSite()))
		}
	}()
	return s.fn(ctx, e)
}

// panicSite is the first frame outside the runtime below a recover: the
// line that panicked.
func panicSite() string {
	pcs := make([]uintptr, 32)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs)])
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "runtime.") {
			return fmt.Sprintf("%s %s:%d", f.Function, filepath.Base(f.File), f.Line)
		}
		if !more {
			return "unknown"
		}
	}
}

// Close does nothing: the function belongs to the program.
func (s *Sink) Close(context.Context) error { return nil }

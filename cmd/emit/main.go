// Command emit stores events in a Courier outbox and returns once they are
// persisted.
//
//	emit --type VOLUME_CREATE --key gv1 --data '{"name":"gv1"}'
//	emit --file events.jsonl          # one envelope per line; - for stdin
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/observability"
	"github.com/courierhq/courier/outbox"
)

type options struct {
	url          string
	timeout      time.Duration
	maxEventSize int
	file         string
	env          event.Envelope
	data         string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "emit:", err)
		return 2
	}
	pubOpts := []outbox.PublisherOption{outbox.WithAckTimeout(opts.timeout), outbox.WithMaxEventSize(opts.maxEventSize)}
	// With OTEL_* set, each emit is a producer span and the trace goes on
	// with the event; otherwise tracing costs nothing.
	tel, err := observability.Setup(ctx, "courier-emit", "")
	if err != nil {
		fmt.Fprintln(stderr, "emit:", err)
		return 2
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	if tel.Tracing() {
		pubOpts = append(pubOpts, outbox.WithTracerProvider(tel.Tracer))
	}
	pub, err := outbox.Dial(ctx, opts.url, opts.timeout, pubOpts...)
	if err != nil {
		fmt.Fprintln(stderr, "emit:", err)
		return 1
	}
	defer pub.Close()
	if opts.file != "" {
		return emitFile(ctx, pub, opts, stdin, stderr)
	}
	e := opts.env
	if opts.data != "" {
		e.Data = json.RawMessage(opts.data)
	}
	id, err := pub.Emit(ctx, e)
	if err != nil {
		fmt.Fprintln(stderr, "emit:", err)
		return 1
	}
	fmt.Fprintln(stdout, id)
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("emit", flag.ContinueOnError)
	// Errors get one line from run; usage is printed only when asked for.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	defURL := os.Getenv("COURIER_URL")
	if defURL == "" {
		defURL = outbox.DefaultURL
	}
	fs.StringVar(&o.url, "url", defURL, "outbox URL ($COURIER_URL)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "bound on connecting and on each acknowledgement")
	fs.IntVar(&o.maxEventSize, "max-event-size", outbox.DefaultMaxEventSize, "largest encoded event accepted, in bytes")
	fs.StringVar(&o.file, "file", "", "read one JSON envelope per line from this file (- for stdin)")
	fs.StringVar(&o.env.Type, "type", "", "event type, e.g. VOLUME_CREATE")
	fs.StringVar(&o.env.ID, "id", "", "event id (default: a new UUIDv7); re-emitting an id stores it once")
	fs.StringVar(&o.env.Key, "key", "", "ordering key")
	fs.StringVar((*string)(&o.env.Level), "level", "", "INFO, WARN or ERROR (default INFO)")
	fs.StringVar((*string)(&o.env.State), "state", "", "Created, Scheduled, Started or Completed")
	fs.StringVar(&o.env.StartID, "start-id", "", "id of the event that started this job")
	fs.StringVar(&o.env.Source, "source", "", "source of the event")
	fs.StringVar(&o.env.Node, "node", "", "node id (default: host name)")
	fs.StringVar(&o.data, "data", "", "event data, as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintln(stderr, "usage: emit --type TYPE [--key K] [--level L] [--data JSON] | emit --file FILE|-")
			fs.PrintDefaults()
		}
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.file != "" && o.env.Type != "" {
		return o, errors.New("give either --file or --type, not both")
	}
	if o.file == "" && o.env.Type == "" {
		return o, errors.New("--type is required (or --file to send many events)")
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("--timeout must be positive, got %s", o.timeout)
	}
	if o.data != "" && !json.Valid([]byte(o.data)) {
		return o, fmt.Errorf("--data is not valid JSON: %s", o.data)
	}
	if o.env.Node == "" {
		o.env.Node, _ = os.Hostname()
	}
	if o.file == "" {
		// Bad input is reported before any connection is made.
		probe := o.env
		probe.Data = json.RawMessage(o.data)
		if err := probe.Complete(o.env.Node); err != nil {
			return o, err
		}
		if err := probe.Validate(); err != nil {
			return o, err
		}
	}
	return o, nil
}

// emitFile sends every line as one event, many in flight at once (they are
// grouped into few fsyncs), and reports each failure with its line number.
// It stops at the first malformed line; what came before it is stored.
func emitFile(ctx context.Context, pub *outbox.Publisher, opts options, stdin io.Reader, stderr io.Writer) int {
	in := stdin
	if opts.file != "-" {
		f, err := os.Open(opts.file)
		if err != nil {
			fmt.Fprintln(stderr, "emit:", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	progress := newProgress(stderr)
	type sent struct {
		line int
		p    *outbox.Pending
	}
	results := make(chan sent, 4096)
	var stored, dups, failed int
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for s := range results {
			<-s.p.Done()
			switch {
			case s.p.Err() != nil:
				failed++
				fmt.Fprintf(stderr, "emit: line %d (event %s): %v\n", s.line, s.p.ID(), s.p.Err())
			case s.p.Duplicate():
				dups++
			default:
				stored++
			}
			progress.update(stored + dups)
		}
	}()

	code := 0
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), opts.maxEventSize+(64<<10))
	line := 0
	for sc.Scan() {
		line++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		e, err := event.Decode(sc.Bytes())
		if err == nil && e.Node == "" {
			e.Node = opts.env.Node
		}
		var p *outbox.Pending
		if err == nil {
			p, err = pub.EmitAsync(ctx, e)
		}
		if err != nil {
			fmt.Fprintf(stderr, "emit: line %d: %v; stopping here\n", line, err)
			code = 1
			break
		}
		results <- sent{line, p}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(stderr, "emit: after line %d: %v; stopping here\n", line, err)
		code = 1
	}
	close(results)
	<-collected
	progress.done()
	fmt.Fprintf(stderr, "emit: %d stored, %d already stored (duplicates), %d failed\n", stored, dups, failed)
	if failed > 0 {
		code = 1
	}
	return code
}

// progress redraws one status line on a terminal and stays silent otherwise.
type progress struct {
	w     io.Writer
	on    bool
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	on := false
	if ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			on = true
		}
	}
	return &progress{w: w, on: on, start: time.Now()}
}

func (p *progress) update(n int) {
	if !p.on || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	rate := float64(n) / time.Since(p.start).Seconds()
	fmt.Fprintf(p.w, "\r%d events stored (%.0f/s)   ", n, rate)
}

func (p *progress) done() {
	if p.on {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

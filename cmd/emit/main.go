// Command emit stores events in a Courier outbox and returns once they are
// persisted: in the outbox, or, when the outbox cannot be reached, in a local
// spool from which a later run sends them with the same ids.
//
//	emit --type VOLUME_CREATE --key gv1 --data '{"name":"gv1"}'
//	emit --type VOLUME.CREATE --state Completed --account admin \
//	     --resource-id 3 --resource-type Volume \
//	     --description "Successfully completed creating volume. Volume Id: 3"
//	emit --file events.jsonl          # one envelope per line; - for stdin
//	emit --flush                      # only send what the spool holds
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
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/observability"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/spool"
)

type options struct {
	url          string
	timeout      time.Duration
	maxEventSize int
	file         string
	env          event.Envelope
	data         string
	spoolDir     string
	creds        string
	tlsCA        string
	noSpool      bool
	flush        bool
}

const usage = `usage: emit --type TYPE [--key K] [--level L] [--state S] [--start-id ID]
            [--description TEXT] [--account A] [--domain D] [--user U]
            [--resource-id ID] [--resource-type T] [--data JSON]
       emit --file FILE|-
       emit --flush

emit prints the event id once the outbox stored it. When the outbox cannot
be reached or does not acknowledge, the event is fsynced in the spool
(--spool) instead, its id printed and the exit status 0: a later emit run,
or emit --flush, sends it with the same id. --no-spool fails instead.

With --file, every line is a whole envelope (its fields are those of the
flags: "level", "start_id", "description", "resource_id", ...); the event
flags do not apply to it, only --node fills in lines that have no node.

`

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
	var creds outbox.Credentials
	if opts.creds != "" {
		if creds, err = outbox.LoadCredentials(opts.creds); err != nil {
			fmt.Fprintln(stderr, "emit:", err)
			return 2
		}
	}
	creds.CAFile = opts.tlsCA
	pubOpts = append(pubOpts, outbox.WithCredentials(creds))
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
	var sp *spool.Spool
	if !opts.noSpool && opts.spoolDir != "" {
		sp, err = spool.Open(opts.spoolDir)
		switch {
		case err != nil && opts.flush:
			fmt.Fprintln(stderr, "emit:", err)
			return 1
		case err != nil:
			// The spool is a safety net: without it, emit works as it
			// did before there was one.
			fmt.Fprintf(stderr, "emit: %v; going on without a spool\n", err)
		default:
			// With a spool, Dial succeeds even when nothing answers.
			pubOpts = append(pubOpts, outbox.WithSpool(sp))
		}
	}
	pub, err := outbox.Dial(ctx, opts.url, opts.timeout, pubOpts...)
	if err != nil {
		fmt.Fprintln(stderr, "emit:", err)
		return 1
	}
	defer pub.Close()
	if opts.flush {
		return flushOnly(ctx, pub, sp, stderr)
	}
	if sp != nil {
		// Events spooled by earlier runs go first, when the outbox takes
		// them; if it does not, they wait for the next run.
		fctx, cancel := context.WithTimeout(ctx, opts.timeout)
		_, _ = outbox.FlushSpool(fctx, pub, sp)
		cancel()
	}
	if opts.file != "" {
		return emitFile(ctx, pub, opts, sp, stdin, stderr)
	}
	e := opts.env
	if opts.data != "" {
		e.Data = json.RawMessage(opts.data)
	}
	id, err := pub.Emit(ctx, e)
	if errors.Is(err, outbox.ErrSpooled) {
		// Safe on disk: exit 0, so that a script does not emit it again
		// under a new id.
		fmt.Fprintln(stdout, id)
		fmt.Fprintln(stderr, "emit:", err)
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "emit:", err)
		return exitFor(err)
	}
	fmt.Fprintln(stdout, id)
	return 0
}

// flushOnly sends what the spool holds and says how many were sent and how
// many remain; some remaining is a failure.
func flushOnly(ctx context.Context, pub *outbox.Publisher, sp *spool.Spool, stderr io.Writer) int {
	sent, err := outbox.FlushSpool(ctx, pub, sp)
	left, lerr := sp.Len()
	if lerr != nil {
		fmt.Fprintln(stderr, "emit:", lerr)
		return 1
	}
	fmt.Fprintf(stderr, "emit: %d sent, %d remain in %s\n", sent, left, sp.Dir())
	if err != nil {
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintln(stderr, "emit:", line)
		}
		return 1
	}
	if left > 0 {
		return 1
	}
	return 0
}

// defaultSpoolDir is $COURIER_SPOOL, else courier/spool under the XDG state
// directory; "" when there is no home to put it in.
func defaultSpoolDir(getenv func(string) string, home func() (string, error)) string {
	if d := getenv("COURIER_SPOOL"); d != "" {
		return d
	}
	// The XDG spec ignores a relative $XDG_STATE_HOME.
	if d := getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "courier", "spool")
	}
	h, err := home()
	if err != nil || h == "" {
		return ""
	}
	return filepath.Join(h, ".local", "state", "courier", "spool")
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
	fs.StringVar(&o.creds, "creds", os.Getenv("COURIER_CREDS"), "credentials for an outbox with outbox.auth: a NATS .creds file, an nkey seed file, or a file with one line user:password ($COURIER_CREDS)")
	fs.StringVar(&o.tlsCA, "tls-ca", os.Getenv("COURIER_TLS_CA"), "CA certificate that verifies the outbox's TLS certificate ($COURIER_TLS_CA; default: the system's)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "bound on connecting and on each acknowledgement")
	fs.IntVar(&o.maxEventSize, "max-event-size", outbox.DefaultMaxEventSize, "largest encoded event accepted, in bytes")
	fs.StringVar(&o.file, "file", "", "read one JSON envelope per line from this file (- for stdin)")
	fs.StringVar(&o.env.Type, "type", "", "event type, e.g. VOLUME_CREATE")
	fs.StringVar(&o.env.ID, "id", "", "event id (default: a new UUIDv7); re-emitting an id stores it once")
	fs.StringVar(&o.env.Key, "key", "", "ordering key")
	fs.StringVar((*string)(&o.env.Level), "level", "", "INFO, WARN or ERROR (default INFO)")
	fs.StringVar((*string)(&o.env.State), "state", "", "Created, Scheduled, Started or Completed")
	fs.StringVar(&o.env.StartID, "start-id", "", "id of the event that started this job")
	fs.StringVar(&o.env.Description, "description", "", "what happened, for a person (CloudStack's description), e.g. \"Successfully completed creating volume. Volume Id: 3\"")
	fs.StringVar(&o.env.Account, "account", "", "account the event belongs to")
	fs.StringVar(&o.env.Domain, "domain", "", "domain of the account")
	fs.StringVar(&o.env.User, "user", "", "user who caused the event")
	fs.StringVar(&o.env.ResourceID, "resource-id", "", "id of the resource the event is about")
	fs.StringVar(&o.env.ResourceType, "resource-type", "", "type of that resource, e.g. Volume")
	fs.StringVar(&o.env.Source, "source", "", "source of the event")
	fs.StringVar(&o.env.Node, "node", "", "node id (default: host name)")
	fs.StringVar(&o.data, "data", "", "event data, as JSON")
	fs.StringVar(&o.spoolDir, "spool", defaultSpoolDir(os.Getenv, os.UserHomeDir),
		"keep events here when the outbox cannot take them ($COURIER_SPOOL, else $XDG_STATE_HOME/courier/spool, else ~/.local/state/courier/spool)")
	fs.BoolVar(&o.noSpool, "no-spool", false, "fail (exit 1) when the outbox cannot take an event, instead of spooling it")
	fs.BoolVar(&o.flush, "flush", false, "only send the spooled events; exit 1 if some remain")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprint(stderr, usage)
			fs.PrintDefaults()
		}
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.flush {
		switch {
		case o.file != "" || o.env.Type != "":
			return o, errors.New("--flush sends the spool only: give it without --file or --type")
		case o.noSpool:
			return o, errors.New("--flush and --no-spool contradict each other")
		case o.spoolDir == "":
			return o, errors.New("--flush: no spool directory: give --spool DIR")
		}
	}
	if o.file != "" && o.env.Type != "" {
		return o, errors.New("give either --file or --type, not both")
	}
	if o.file == "" && o.env.Type == "" && !o.flush {
		return o, errors.New("--type is required (or --file to send many events, or --flush)")
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
	if o.file == "" && !o.flush {
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
// It stops at the first malformed line; what came before it is stored (or
// spooled: a spooled event is not a failure, it is safe and will be sent).
func emitFile(ctx context.Context, pub *outbox.Publisher, opts options, sp *spool.Spool, stdin io.Reader, stderr io.Writer) int {
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
	var stored, spooled, dups, failed int
	var cause error // of the first event spooled
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for s := range results {
			<-s.p.Done()
			switch {
			case s.p.Spooled():
				spooled++
				if cause == nil {
					cause = errors.Unwrap(s.p.Err())
				}
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
	maxLine := opts.maxEventSize + 64<<10
	sc.Buffer(make([]byte, 64<<10), maxLine)
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
			fmt.Fprintf(stderr, "emit: line %d: %v; stopping here (the lines before it are sent)\n", line, err)
			code = exitFor(err)
			break
		}
		results <- sent{line, p}
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		fmt.Fprintf(stderr, "emit: line %d is longer than %d bytes (--max-event-size %d, plus room for the envelope); stopping here (the lines before it are sent)\n", line+1, maxLine, opts.maxEventSize)
		code = 2
	} else if err != nil {
		fmt.Fprintf(stderr, "emit: after line %d: %v; stopping here\n", line, err)
		code = 1
	}
	close(results)
	<-collected
	progress.done()
	if spooled > 0 {
		fmt.Fprintf(stderr, "emit: %d events spooled in %s (%v); they will be sent once the outbox is reachable\n", spooled, sp.Dir(), cause)
	}
	fmt.Fprintf(stderr, "emit: %d stored, %d spooled, %d already stored (duplicates), %d failed\n", stored, spooled, dups, failed)
	if failed > 0 {
		code = 1
	}
	return code
}

// exitFor is the exit status of an emit that failed: 2 for bad input (an
// invalid or oversized event), 1 for the outbox's failures.
func exitFor(err error) int {
	if errors.Is(err, event.ErrInvalid) || errors.Is(err, outbox.ErrTooLarge) {
		return 2
	}
	return 1
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

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// params describe one run of one system, passed from the parent to the
// child process on its command line.
type params struct {
	System      string        // courier | watermill
	Scenario    string        // its name, for names on brokers and profiles
	Kind        string        // emit | e2e | backlog
	Sink        string        // webhook | amqp | kafka
	Size        int           // bytes per event
	Types       int           // event types the events cycle through; 0 or 1: one
	N           int           // events
	Producers   int           // emit: concurrent producers, each waiting for its ack
	Rate        int           // e2e: offered events/s, 0 = as fast as possible
	FailPct     int           // e2e: share of requests the receiver answers 503
	Concurrency int           // deliveries in flight
	Timeout     time.Duration // for the whole measured part
	AMQPURL     string        // amqp: the broker
	KafkaAddr   string        // kafka: the broker
	ProfileDir  string        // write a CPU profile of the measured window here
	Run         int           // which repetition, for file names
	// CourierOutbox holds extra outbox settings for Courier ("key: value, ...").
	CourierOutbox string
	// CourierEventLog keeps Courier's event log on (its default).
	CourierEventLog bool
}

// unique names what this run creates on a shared broker (exchange, queue,
// topic), so that runs never see each other's messages.
func (p params) unique() string {
	return fmt.Sprintf("bench-%s-%s-%d-%d", p.Scenario, p.System, os.Getpid(), time.Now().UnixNano()%1e9)
}

// result is what a child reports (as JSON on stdout); the parent adds the
// peak RSS it reads from the child's rusage.
type result struct {
	System       string  `json:"system"`
	Scenario     string  `json:"scenario"`
	Run          int     `json:"run"`
	N            int     `json:"events"`
	Size         int     `json:"event_size"`
	Seconds      float64 `json:"seconds"`        // measured window
	EventsPerSec float64 `json:"events_per_sec"` // N / Seconds
	P50ms        float64 `json:"p50_ms,omitempty"`
	P99ms        float64 `json:"p99_ms,omitempty"`
	MaxMs        float64 `json:"max_ms,omitempty"`
	Slowest      string  `json:"slowest,omitempty"`       // the event with MaxMs, to look it up in logs
	QueueSeconds float64 `json:"queue_seconds,omitempty"` // backlog: time to store it
	FirstSeconds float64 `json:"first_seconds,omitempty"` // backlog: from the drain's start to the first receipt
	// LogSeconds and LogCPUSeconds: backlog, Courier with its event log:
	// after the drain, until the log has every event and attempt. The log
	// yields to a busy sink, so most of its work comes after the window.
	LogSeconds    float64 `json:"log_seconds,omitempty"`
	LogCPUSeconds float64 `json:"log_cpu_seconds,omitempty"`
	Lost          int     `json:"lost"`
	Duplicates    int     `json:"duplicates"`
	Refused       int64   `json:"refused,omitempty"` // 503 answers given
	CPUSeconds    float64 `json:"cpu_seconds"`       // user+system within the measured window
	CPUPer100k    float64 `json:"cpu_seconds_per_100k"`
	MaxRSSMiB     float64 `json:"max_rss_mib"`       // whole child process
	Unknown       int64   `json:"unknown,omitempty"` // receipts of ids the harness never emitted
	Profile       string  `json:"profile,omitempty"` // CPU profile of the measured window
}

// logWaiter is a system with an event log, which waitLog waits for to
// hold everything delivered so far.
type logWaiter interface {
	waitLog(ctx context.Context, within time.Duration) error
}

// system is what a scenario drives; both implementations start with the
// durable store only (nothing delivering) and start delivery on request.
type system interface {
	open(ctx context.Context) error
	startDelivery(ctx context.Context, to sinkTarget) error
	emit(ctx context.Context, i int) error
	emitAsync(ctx context.Context, i int) (wait func() error, err error)
	fast(ctx context.Context, n int, stamp func(int)) error
	store() (url, stream string)
	close()
}

func runOne(p params) (res result, err error) {
	var sys system
	switch p.System {
	case "courier":
		sys = newCourier(p)
	case "watermill":
		sys = newWatermill(p)
	default:
		return res, fmt.Errorf("unknown system %q", p.System)
	}
	defer sys.close()
	ctx, cancel := context.WithTimeout(context.Background(), p.Timeout+time.Minute)
	defer cancel()
	if err := sys.open(ctx); err != nil {
		return res, err
	}
	res = result{System: p.System, Scenario: p.Scenario, Run: p.Run, N: p.N, Size: p.Size}
	switch p.Kind {
	case "emit":
		err = runEmit(ctx, sys, p, &res)
	case "e2e":
		err = runE2E(ctx, sys, p, &res)
	case "backlog":
		err = runBacklog(ctx, sys, p, &res)
	default:
		err = fmt.Errorf("unknown scenario kind %q", p.Kind)
	}
	if err != nil {
		return res, err
	}
	res.EventsPerSec = float64(p.N) / res.Seconds
	res.CPUPer100k = res.CPUSeconds * 100000 / float64(p.N)
	return res, nil
}

// runEmit: durable emits only, nothing delivering; then every id is read
// back from the stream.
func runEmit(ctx context.Context, sys system, p params, res *result) error {
	win, err := startWindow(p, res)
	if err != nil {
		return err
	}
	if err := produce(ctx, p.N, p.Producers, sys.emit); err != nil {
		win.end(res)
		return err
	}
	win.end(res)
	url, stream := sys.store()
	lost, dups, err := verifyStored(ctx, url, stream, p.N)
	res.Lost, res.Duplicates = lost, dups
	return err
}

// runE2E: delivery running, events emitted (as fast as possible, or paced
// at Rate) until the receiver accepted every one.
func runE2E(ctx context.Context, sys system, p params, res *result) error {
	ep, err := newEndpoint(ctx, p)
	if err != nil {
		return err
	}
	defer ep.close()
	if err := sys.startDelivery(ctx, ep.target()); err != nil {
		return err
	}
	emitAt := make([]int64, p.N)
	stamp := func(i int) { emitAt[i] = time.Now().UnixNano() }
	win, err := startWindow(p, res)
	if err != nil {
		return err
	}
	defer win.heapAtHalf(ep.counts())()
	if p.Rate == 0 {
		err = sys.fast(ctx, p.N, stamp)
	} else {
		err = paced(ctx, sys, p.N, p.Rate, stamp)
	}
	if err == nil {
		err = ep.counts().wait(p.Timeout - time.Since(win.t0))
	}
	win.end(res)
	if err != nil {
		return err
	}
	t := ep.counts()
	res.Lost, res.Duplicates = t.lostAndDuplicates()
	res.Refused, res.Unknown = ep.refusedCount(), t.unknown.Load()
	lat := make([]time.Duration, 0, p.N)
	var slowest time.Duration
	for i := range p.N {
		if at := t.first(i); at != 0 {
			d := time.Duration(at - emitAt[i])
			lat = append(lat, d)
			if d > slowest {
				slowest, res.Slowest = d, eventID(i)
			}
		}
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		res.P50ms = ms(lat[len(lat)/2])
		res.P99ms = ms(lat[len(lat)*99/100])
		res.MaxMs = ms(slowest)
	}
	return nil
}

// runBacklog: N events stored while nothing delivers (Courier's worker not
// running, Watermill's router not running), then delivery starts and the
// drain is timed until the receiver accepted every event. For Courier the
// window includes the worker starting over the stored outbox.
func runBacklog(ctx context.Context, sys system, p params, res *result) error {
	ep, err := newEndpoint(ctx, p)
	if err != nil {
		return err
	}
	defer ep.close()
	q0 := time.Now()
	if err := sys.fast(ctx, p.N, nil); err != nil {
		return err
	}
	res.QueueSeconds = time.Since(q0).Seconds()
	win, err := startWindow(p, res)
	if err != nil {
		return err
	}
	defer win.heapAtHalf(ep.counts())()
	err = sys.startDelivery(ctx, ep.target())
	if err == nil {
		err = ep.counts().wait(p.Timeout - time.Since(q0))
	}
	win.end(res)
	if err != nil {
		return err
	}
	if lw, ok := sys.(logWaiter); ok && p.CourierEventLog {
		cpu0, t0 := cpuNow(), time.Now()
		if err := lw.waitLog(ctx, p.Timeout-time.Since(q0)); err != nil {
			return err
		}
		res.LogSeconds, res.LogCPUSeconds = time.Since(t0).Seconds(), cpuNow()-cpu0
	}
	res.Lost, res.Duplicates = ep.counts().lostAndDuplicates()
	res.Unknown = ep.counts().unknown.Load()
	if first := ep.counts().earliest(); first != 0 {
		res.FirstSeconds = time.Duration(first - win.t0.UnixNano()).Seconds()
	}
	return nil
}

// newEndpoint sets up where the run delivers, and what counts receipts.
func newEndpoint(ctx context.Context, p params) (endpoint, error) {
	switch p.Sink {
	case "", "webhook":
		r, err := newReceiver(p.N, p.FailPct)
		if err != nil {
			return nil, err
		}
		return r, nil
	case "amqp":
		e, err := newAMQPEndpoint(p.AMQPURL, p.unique(), p.N)
		if err != nil {
			return nil, err
		}
		return e, nil
	case "kafka":
		if p.KafkaAddr == "" {
			return nil, errors.New("no Kafka broker given (-kafka)")
		}
		e, err := newKafkaEndpoint(ctx, []string{p.KafkaAddr}, p.unique(), p.N)
		if err != nil {
			return nil, err
		}
		return e, nil
	}
	return nil, fmt.Errorf("unknown sink kind %q", p.Sink)
}

// window is the measured part of a run: wall time, the process's CPU
// time, and with -profile a CPU profile of just that part.
type window struct {
	t0   time.Time
	cpu0 float64
	prof *os.File
	heap string // with -profile: where heapAtHalf writes
}

func startWindow(p params, res *result) (*window, error) {
	w := &window{}
	if p.ProfileDir != "" {
		name := filepath.Join(p.ProfileDir, fmt.Sprintf("%s-%s-run%d.cpu.pprof", p.Scenario, p.System, p.Run))
		f, err := os.Create(name)
		if err != nil {
			return nil, fmt.Errorf("profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("profile: %w", err)
		}
		w.prof, res.Profile = f, name
		w.heap = filepath.Join(p.ProfileDir, fmt.Sprintf("%s-%s-run%d.heap.pprof", p.Scenario, p.System, p.Run))
	}
	w.cpu0, w.t0 = cpuNow(), time.Now()
	return w, nil
}

// heapAtHalf writes, with -profile, a heap profile once half of the events
// arrived (what the process holds mid-delivery, which is what its peak RSS
// is made of), after a GC so that it is current. The function it returns
// stops waiting and returns once any profile is written.
func (w *window) heapAtHalf(t *tally) func() {
	if w.heap == "" {
		return func() {}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-t.half:
		case <-stop:
			return
		}
		runtime.GC()
		f, err := os.Create(w.heap)
		if err != nil {
			fmt.Fprintf(os.Stderr, "compare: heap profile: %v\n", err)
			return
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "compare: heap profile: %v\n", err)
		}
		_ = f.Close()
	}()
	return func() { close(stop); <-done }
}

func (w *window) end(res *result) {
	res.Seconds, res.CPUSeconds = time.Since(w.t0).Seconds(), cpuNow()-w.cpu0
	if w.prof != nil {
		pprof.StopCPUProfile()
		_ = w.prof.Close()
		w.prof = nil
	}
}

// paced offers rate events/s, open loop: a 1ms ticker emits whatever is
// due by now, so a slow emit does not lower the offered rate. Each event is
// queued without waiting for the previous one's ack.
func paced(ctx context.Context, sys system, n, rate int, stamp func(int)) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var waits []func() error
	start, sent := time.Now(), 0
	for sent < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("paced emit: %w", ctx.Err())
		case now := <-tick.C:
			due := min(int(now.Sub(start).Seconds()*float64(rate))+1, n)
			for ; sent < due; sent++ {
				stamp(sent)
				w, err := sys.emitAsync(ctx, sent)
				if err != nil {
					return err
				}
				waits = append(waits, w)
			}
		}
	}
	var errs []error
	for _, w := range waits {
		if err := w(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// verifyStored reads every message of the stream back with an ordered
// consumer and checks that each event id (the Nats-Msg-Id header, set by
// both systems) is there.
func verifyStored(ctx context.Context, url, stream string, n int) (lost, dups int, err error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return 0, 0, fmt.Errorf("verify: connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, 0, fmt.Errorf("verify: %w", err)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, 0, fmt.Errorf("verify: stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("verify: stream info: %w", err)
	}
	total := int(info.State.Msgs)
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return 0, 0, fmt.Errorf("verify: consumer: %w", err)
	}
	seen := make([]int, n)
	for read := 0; read < total; {
		batch, err := cons.Fetch(min(total-read, 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return 0, 0, fmt.Errorf("verify: fetch: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if i, ok := eventIndex(m.Headers().Get(nats.MsgIdHdr)); ok && i < n {
				seen[i]++
			}
		}
		if err := batch.Error(); err != nil {
			return 0, 0, fmt.Errorf("verify: fetch: %w", err)
		}
		if got == 0 {
			return 0, 0, fmt.Errorf("verify: stream %s reports %d messages but only %d could be read", stream, total, read)
		}
		read += got
	}
	for _, c := range seen {
		switch {
		case c == 0:
			lost++
		case c > 1:
			dups += c - 1
		}
	}
	return lost, dups, nil
}

func cpuNow() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return tv(ru.Utime) + tv(ru.Stime)
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

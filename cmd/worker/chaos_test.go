package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
)

// chaosInt reads a scenario's size from the environment (make chaos sets
// the full sizes; CI runs the defaults, a short version).
func chaosInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive whole number", name, v)
	}
	return n
}

// flakyCounter is a webhook receiver that fails about one request in ten
// (decided by the event id and the try, so a retry usually passes) and
// counts the requests it accepted per id.
type flakyCounter struct {
	mu       sync.Mutex
	accepted map[string]int
	// delivered and duplicates count the scenario's events (ids with
	// prefix), kept as they come so that checking costs nothing.
	prefix                string
	delivered, duplicates int
	lastOK                time.Time
	// firstOK is the first request accepted after since.
	since, firstOK time.Time
}

// mark starts timing the next accepted request.
func (f *flakyCounter) mark(since time.Time) {
	f.mu.Lock()
	f.since, f.firstOK = since, time.Time{}
	f.mu.Unlock()
}

// resumed is the time from the mark to the first accepted request after
// it, if one came.
func (f *flakyCounter) resumed() (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.firstOK.Sub(f.since), !f.firstOK.IsZero()
}

func (f *flakyCounter) answer(d testutil.Delivery, seen int) (int, http.Header) {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", d.ID, seen)
	if h.Sum32()%10 == 0 {
		return http.StatusInternalServerError, nil
	}
	f.mu.Lock()
	f.accepted[d.ID]++
	if strings.HasPrefix(d.ID, f.prefix) {
		if f.accepted[d.ID] == 1 {
			f.delivered++
		} else {
			f.duplicates++
		}
	}
	f.lastOK = time.Now()
	if f.firstOK.IsZero() && f.lastOK.After(f.since) {
		f.firstOK = f.lastOK
	}
	f.mu.Unlock()
	return http.StatusOK, nil
}

// counts says how many of the scenario's events were delivered, and how
// many deliveries were duplicates.
func (f *flakyCounter) counts() (delivered, duplicates int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.delivered, f.duplicates
}

// TestChaosKillStorm: events are emitted while the worker (and so its
// embedded outbox) is SIGKILLed at random moments and restarted, and a
// webhook fails one request in ten. Every event whose emit was
// acknowledged is delivered; duplicates stay within the in-flight window
// of each kill. make chaos runs it with 100,000 events and 20 kills
// (COURIER_CHAOS_EVENTS, COURIER_CHAOS_KILLS); make test a short version.
func TestChaosKillStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos scenario skipped with -short")
	}
	total := chaosInt(t, "COURIER_CHAOS_EVENTS", 3000)
	kills := chaosInt(t, "COURIER_CHAOS_KILLS", 3)
	// What a kill makes the worker deliver again: the events in flight,
	// at most the consumer's max_ack_pending (writeConfig's concurrency 64
	// gives 1,280), and those acknowledged in the last 100 ms or less, as
	// nats-server writes a consumer's state at most every 100 ms
	// (consumerFileStore.flushLoop). One window per kill has held, with
	// about 850 per kill at this test's rate of delivery; a machine that
	// delivers above 12,800 events/s could pass it with the second part alone.
	window := config.Sink{SinkCommon: config.SinkCommon{Concurrency: 64}}.MaxAckPending()

	flaky := &flakyCounter{accepted: map[string]int{}, prefix: "storm-"}
	rcv := testutil.NewReceiver(t)
	rcv.Answer(flaky.answer)
	dir := t.TempDir()
	port := freePort(t)
	cfg := writeConfig(t, dir, port, rcv.URL())
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	proc := startWorkerProc(t, cfg)

	ids := make([]string, total)
	for i := range ids {
		ids[i] = fmt.Sprintf("storm-%06d", i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	// The producer emits in windows of 500, and emits again with the same
	// ids whatever was not acknowledged (the emit contract): after a kill
	// it dials the restarted outbox. Stored twice within the duplicate
	// window is stored once.
	emitted := make(chan struct{})
	var emitErr error
	go func() {
		defer close(emitted)
		var pub *outbox.Publisher
		defer func() {
			if pub != nil {
				pub.Close()
			}
		}()
		next := 0
		for next < total && ctx.Err() == nil {
			if pub == nil {
				p, err := outbox.Dial(ctx, url, time.Second, outbox.WithAckTimeout(5*time.Second))
				if err != nil {
					continue // the worker is restarting; Dial waited a second
				}
				pub = p
			}
			end := min(next+500, total)
			var window []*outbox.Pending
			for i := next; i < end; i++ {
				pe, err := pub.EmitAsync(ctx, event.Envelope{ID: ids[i], Type: "VOLUME_CREATE", Data: []byte(`{"i":` + strconv.Itoa(i) + `}`)})
				if err != nil {
					break
				}
				window = append(window, pe)
			}
			acked := 0
			for _, pe := range window {
				<-pe.Done()
				if pe.Err() != nil {
					break
				}
				acked++
			}
			next += acked
			if acked < end-(next-acked) {
				pub.Close()
				pub = nil
			}
		}
		emitErr = ctx.Err()
	}()

	// The killer: at random points of the delivery (after a random number
	// of events delivered), SIGKILL, restart at once.
	rnd := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	marks := make([]int, kills)
	for k := range marks {
		marks[k] = 1 + rnd.IntN(total*9/10)
	}
	slices.Sort(marks)
	var ready, recover []time.Duration
	for k, mark := range marks {
		testutil.Eventually(t, time.Minute, func() bool { d, _ := flaky.counts(); return d >= mark },
			"%d events delivered before kill %d", mark, k+1)
		if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", k+1, err)
		}
		_ = proc.cmd.Wait()
		killedAt := time.Now()
		flaky.mark(killedAt)
		proc = startWorkerProc(t, cfg)
		// Recovered: the restarted worker takes events and delivers again
		// (a probe makes sure it has something to deliver).
		probe := waitReady(t, url)
		ready = append(ready, time.Since(killedAt))
		_, err := probe.Emit(ctx, event.Envelope{ID: fmt.Sprintf("probe-%d", k), Type: "CHAOS_PROBE"})
		probe.Close()
		if err != nil {
			t.Fatalf("probe after kill %d: %v", k+1, err)
		}
		testutil.Eventually(t, 60*time.Second, func() bool { _, ok := flaky.resumed(); return ok },
			"the restarted worker delivers after kill %d", k+1)
		d, _ := flaky.resumed()
		recover = append(recover, d)
	}
	<-emitted
	if emitErr != nil {
		t.Fatalf("emitting stopped: %v", emitErr)
	}

	start := time.Now()
	testutil.Eventually(t, 10*time.Minute, func() bool { d, _ := flaky.counts(); return d == total },
		"all %d acknowledged events delivered", total)
	delivered, dups := flaky.counts()
	bound := kills * window
	t.Logf("chaos kill-storm: %d events, webhook failing 10%%, %d SIGKILLs; emitted %d, delivered %d, lost %d, duplicates %d (bound %d); after a kill, emits acknowledged again within %s and deliveries resumed within %s (worst of %d); drained %s after the last kill",
		total, kills, total, delivered, total-delivered, dups, bound, slices.Max(ready).Round(time.Millisecond), slices.Max(recover).Round(time.Millisecond), kills, time.Since(start).Round(time.Millisecond))
	if dups > bound {
		t.Errorf("%d duplicate deliveries, more than %d (one in-flight window of %d per kill)", dups, bound, window)
	}
}

// TestChaosReceiverHiccup: the webhook hangs once for 1.5 s, longer than
// the sink's timeout (1 s), so every attempt in flight fails at once and
// the circuit opens. Delivery must resume within a few seconds of the
// endpoint answering again. It used to stop for the circuit breaker's
// probe_max (a minute): each of the in-flight failures doubled the probe
// interval, and the loop slept until that probe even after a success had
// closed the circuit (the kill storm's stall with 65,869 pending).
func TestChaosReceiverHiccup(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos scenario skipped with -short")
	}
	const total, hiccupAt, hiccup = 5000, 500, 1500 * time.Millisecond
	var (
		mu          sync.Mutex
		accepted    = map[string]bool{}
		hiccupUntil time.Time
		lastOK      time.Time
		longestGap  time.Duration
	)
	rcv := testutil.NewReceiver(t)
	rcv.Answer(func(d testutil.Delivery, _ int) (int, http.Header) {
		mu.Lock()
		if len(accepted) >= hiccupAt && hiccupUntil.IsZero() {
			hiccupUntil = time.Now().Add(hiccup)
		}
		until := hiccupUntil
		mu.Unlock()
		if wait := time.Until(until); wait > 0 {
			time.Sleep(wait)
			return http.StatusServiceUnavailable, nil // the sink gave up on it already
		}
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if !lastOK.IsZero() && now.Sub(lastOK) > longestGap {
			longestGap = now.Sub(lastOK)
		}
		accepted[d.ID], lastOK = true, now
		return http.StatusOK, nil
	})
	dir := t.TempDir()
	port := freePort(t)
	cfg := writeConfig(t, dir, port, rcv.URL())
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	startWorkerProc(t, cfg)
	pub := waitReady(t, url)
	defer pub.Close()
	pending := make([]*outbox.Pending, 0, total)
	for i := range total {
		pe, err := pub.EmitAsync(context.Background(), event.Envelope{ID: fmt.Sprintf("hiccup-%05d", i), Type: "VOLUME_CREATE"})
		if err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
		pending = append(pending, pe)
	}
	for i, pe := range pending {
		<-pe.Done()
		if pe.Err() != nil {
			t.Fatalf("emit %d: %v", i, pe.Err())
		}
	}
	delivered := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for id := range accepted {
			if strings.HasPrefix(id, "hiccup-") {
				n++
			}
		}
		return n
	}
	testutil.Eventually(t, time.Minute, func() bool { mu.Lock(); defer mu.Unlock(); return !hiccupUntil.IsZero() }, "the hiccup started")
	// Without it, the remaining events take a few seconds; a minute's
	// stall after the hiccup fails this (the deadline leaves room for a
	// busy machine).
	testutil.Eventually(t, 45*time.Second, func() bool { return delivered() == total }, "all %d events delivered after a %s hiccup", total, hiccup)
	mu.Lock()
	gap := longestGap
	mu.Unlock()
	t.Logf("receiver hiccup of %s: longest pause between deliveries %s", hiccup, gap.Round(time.Millisecond))
	if gap > hiccup+15*time.Second {
		t.Errorf("deliveries paused for %s after a %s hiccup", gap.Round(time.Millisecond), hiccup)
	}
}

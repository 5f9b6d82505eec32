package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
)

// chaosDuration reads a scenario's duration from the environment.
func chaosDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration", name, v)
	}
	return d
}

// orderedReceiver is a webhook that is down (503) while down is set, and
// otherwise accepts, checking that each key's events arrive in order. With
// hang set, being down means holding each request unanswered until the
// endpoint is back.
type orderedReceiver struct {
	mu         sync.Mutex
	hang       bool
	down       bool
	up         chan struct{} // closed when the endpoint is back
	downTries  int
	accepted   map[string]bool
	lastSeq    map[string]int
	outOfOrder []string
}

func (o *orderedReceiver) answer(d testutil.Delivery, _ int) (int, http.Header) {
	var data struct {
		Seq int `json:"seq"`
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !strings.HasPrefix(d.ID, "outage-") {
		return http.StatusOK, nil // waitReady's probe
	}
	if o.down {
		o.downTries++
		if o.hang {
			up := o.up
			o.mu.Unlock()
			<-up // the sink gave up on this request long ago
			o.mu.Lock()
		}
		return http.StatusServiceUnavailable, nil
	}
	if o.accepted[d.ID] {
		return http.StatusOK, nil // a duplicate: order is about first deliveries
	}
	var env event.Envelope
	if err := json.Unmarshal(d.Body, &env); err == nil {
		_ = json.Unmarshal(env.Data, &data)
	}
	if data.Seq != o.lastSeq[env.Key]+1 {
		o.outOfOrder = append(o.outOfOrder, fmt.Sprintf("%s: %d after %d", env.Key, data.Seq, o.lastSeq[env.Key]))
	}
	o.lastSeq[env.Key] = data.Seq
	o.accepted[d.ID] = true
	return http.StatusOK, nil
}

func (o *orderedReceiver) setDown(down bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if down && !o.down {
		o.up = make(chan struct{})
	} else if !down && o.down {
		close(o.up)
	}
	o.down = down
}

func (o *orderedReceiver) delivered() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.accepted)
}

// TestChaosEndpointDown: the webhook is down for a while, answering 503 or
// not answering at all (hanging), under a steady 50 events/s on 10 keys, to a sink with ordering: key. Nothing is
// dead-lettered, the circuit breaker keeps the attempts during the outage
// low, and once the endpoint is back every event arrives, each key's in
// order. make chaos keeps it down 5 minutes (COURIER_CHAOS_DOWN); make
// test 15 s.
func TestChaosEndpointDown(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos scenario skipped with -short")
	}
	down := chaosDuration(t, "COURIER_CHAOS_DOWN", 15*time.Second)
	t.Run("503", func(t *testing.T) { endpointDown(t, down, false) })
	// A hanging endpoint costs the sink its timeout per attempt, and holds
	// a connection each: the breaker must still keep them few.
	t.Run("hanging", func(t *testing.T) { endpointDown(t, down, true) })
}

func endpointDown(t *testing.T, down time.Duration, hang bool) {
	const keys, perSecond = 10, 50
	rcv := testutil.NewReceiver(t)
	o := &orderedReceiver{hang: hang, accepted: map[string]bool{}, lastSeq: map[string]int{}}
	t.Cleanup(func() { o.setDown(false) }) // releases held requests, so the receiver can close
	rcv.Answer(o.answer)
	dir := t.TempDir()
	port := freePort(t)
	cfg := filepath.Join(dir, "courier.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`node_id: outage-node
data_dir: %s
log: {level: info, format: json}
admin: {listen: "127.0.0.1:0"}
outbox: {listen: "127.0.0.1:%d"}
webhook_allow: [127.0.0.1/32]
sinks:
  - name: audit
    type: webhook
    url: %s
    timeout: 1s
    ordering: key
    concurrency: 16
    retry: {initial: 50ms, max_interval: 500ms}
`, filepath.Join(dir, "data"), port, rcv.URL())), 0o600); err != nil {
		t.Fatal(err)
	}
	startWorkerProc(t, cfg)
	pub := waitReady(t, fmt.Sprintf("nats://127.0.0.1:%d", port))
	defer pub.Close()

	// Steady load: before, during and after the outage.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	warm, after := 3*time.Second, 5*time.Second
	emitted := make(chan int, 1)
	go func() {
		tick := time.NewTicker(time.Second / perSecond)
		defer tick.Stop()
		seq := map[string]int{}
		n := 0
		end := time.Now().Add(warm + down + after)
		for time.Now().Before(end) && ctx.Err() == nil {
			<-tick.C
			key := fmt.Sprintf("vol-%d", n%keys)
			seq[key]++
			if _, err := pub.Emit(ctx, event.Envelope{ID: fmt.Sprintf("outage-%06d", n), Type: "VOLUME_SET", Key: key,
				Data: []byte(fmt.Sprintf(`{"seq":%d}`, seq[key]))}); err != nil {
				t.Errorf("emit %d: %v", n, err)
				break
			}
			n++
		}
		emitted <- n
	}()
	time.Sleep(warm) // the load's shape, not synchronisation: the outage starts after 3 s of load
	o.setDown(true)
	time.Sleep(down) // the outage lasts this long
	o.setDown(false)
	upAt := time.Now()
	total := <-emitted
	testutil.Eventually(t, 5*time.Minute, func() bool { return o.delivered() == total }, "all %d events delivered after the endpoint came back", total)
	drained := time.Since(upAt)

	r := cli(t, "dlq", "list", "--config", cfg, "--sink", "audit", "--json")
	if r.err != nil {
		t.Fatalf("dlq list: %v", r.err)
	}
	o.mu.Lock()
	tries, disorder := o.downTries, o.outOfOrder
	o.mu.Unlock()
	how := "503"
	if hang {
		how = "hanging"
	}
	t.Logf("chaos endpoint-down (%s): %d events/s on %d keys, webhook down %s; emitted %d, delivered %d, lost %d, dead-lettered %d, attempts while down %d (%d events arrived meanwhile), out of order %d; everything delivered %s after it came back",
		how, perSecond, keys, down, total, o.delivered(), total-o.delivered(), strings.Count(r.stdout, "\n"), tries, int(down.Seconds())*perSecond, len(disorder), drained.Round(time.Millisecond))
	if strings.TrimSpace(r.stdout) != "" {
		t.Errorf("events were dead-lettered during the outage:\n%s", r.stdout)
	}
	if len(disorder) > 0 {
		t.Errorf("%d events out of their key's order, e.g. %v", len(disorder), disorder[:min(5, len(disorder))])
	}
	// Without the breaker, each key's head event is retried every 500 ms
	// at most: 10 keys make 20 attempts a second. With it: the attempts in
	// flight when it opens, then a round of probes (one per held key, and
	// the loop's) at an interval doubling from 1 s to a minute.
	rounds := 0
	for at, every := time.Duration(0), time.Second; at < down; at, every = at+every, min(2*every, time.Minute) {
		rounds++
	}
	if limit := 2*16 + (keys+1)*(rounds+1); tries > limit {
		t.Errorf("%d attempts while the endpoint was down, more than %d: the breaker did not hold them back", tries, limit)
	}
}

// TestChaosRestartUnderBacklog: a backlog is queued, the worker is stopped
// with SIGTERM half-way through draining it and started again. Nothing is
// lost, the graceful stop leaves at most one in-flight window of
// duplicates, and delivery resumes within seconds of the restart whatever
// the backlog. make chaos queues 1,000,000 (COURIER_CHAOS_BACKLOG); make
// test 20,000.
func TestChaosRestartUnderBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos scenario skipped with -short")
	}
	total := chaosInt(t, "COURIER_CHAOS_BACKLOG", 20000)
	counter := &flakyCounter{accepted: map[string]int{}, prefix: "backlog-"}
	rcv := testutil.NewReceiver(t)
	rcv.Answer(counter.answer)
	dir := t.TempDir()
	port := freePort(t)
	cfg := writeConfig(t, dir, port, rcv.URL())
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	proc := startWorkerProc(t, cfg)
	pub := waitReady(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	emitStart := time.Now()
	for start := 0; start < total; start += 10000 {
		var window []*outbox.Pending
		for i := start; i < min(start+10000, total); i++ {
			pe, err := pub.EmitAsync(ctx, event.Envelope{ID: fmt.Sprintf("backlog-%07d", i), Type: "VOLUME_CREATE"})
			if err != nil {
				t.Fatalf("emit %d: %v", i, err)
			}
			window = append(window, pe)
		}
		for _, pe := range window {
			<-pe.Done()
			if err := pe.Err(); err != nil {
				t.Fatalf("emit: %v", err)
			}
		}
	}
	pub.Close()
	emitTook := time.Since(emitStart)
	backlog := total - func() int { d, _ := counter.counts(); return d }()

	testutil.Eventually(t, 20*time.Minute, func() bool { d, _ := counter.counts(); return d >= total/2 }, "half of %d events delivered", total)
	stopAt := time.Now()
	if err := proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := proc.cmd.Wait(); err != nil {
		t.Fatalf("the worker did not stop cleanly on SIGTERM: %v", err)
	}
	stopTook := time.Since(stopAt)
	atStop, _ := counter.counts()

	restartAt := time.Now()
	counter.mark(restartAt)
	startWorkerProc(t, cfg)
	testutil.Eventually(t, time.Minute, func() bool { _, ok := counter.resumed(); return ok }, "deliveries after the restart")
	resumed, _ := counter.resumed()
	testutil.Eventually(t, 20*time.Minute, func() bool { d, _ := counter.counts(); return d == total }, "all %d events delivered", total)
	delivered, dups := counter.counts()
	window := 1280
	t.Logf("chaos restart-under-backlog: %d events queued in %s (backlog %d when the last was acknowledged), SIGTERM at %d delivered (stopped in %s), restarted; delivered %d, lost %d, duplicates %d (bound %d); deliveries resumed %s after the restart; drained %s after it",
		total, emitTook.Round(time.Millisecond), backlog, atStop, stopTook.Round(time.Millisecond), delivered, total-delivered, dups, window,
		resumed.Round(time.Millisecond), time.Since(restartAt).Round(time.Millisecond))
	if dups > window {
		t.Errorf("%d duplicates after a graceful stop, more than one in-flight window (%d)", dups, window)
	}
	if resumed > 30*time.Second {
		t.Errorf("deliveries resumed %s after the restart: the restart's cost grows with the backlog", resumed)
	}
}

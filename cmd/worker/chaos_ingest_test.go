package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/internal/testutil"
)

// TestChaosIngestKills: producers post to the HTTP ingest endpoint (single
// events and NDJSON batches of 50) while the worker is SIGKILLed and
// restarted again and again, each kill after another 2,000 events were
// answered 200. Every event answered 200 is delivered: the answer comes
// after the outbox's fsync. A producer whose request failed posts the next
// one; it does not resend, so only events answered 200 are owed. make
// chaos kills 20 times (COURIER_CHAOS_KILLS); make test 3.
func TestChaosIngestKills(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos scenario skipped with -short")
	}
	kills := chaosInt(t, "COURIER_CHAOS_KILLS", 3)
	rcv := testutil.NewReceiver(t)
	dir := t.TempDir()
	port, ingestPort := freePort(t), freePort(t)
	cfg := writeConfig(t, dir, port, rcv.URL())
	const token = "ingest-token-0123456789"
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "ingest:\n  listen: 127.0.0.1:%d\n  tokens: [{token: %s}]\n", ingestPort, token)
	f.Close()
	url := fmt.Sprintf("http://127.0.0.1:%d/v1/events", ingestPort)
	proc := startWorkerProc(t, cfg)
	waitReady(t, fmt.Sprintf("nats://127.0.0.1:%d", port)).Close()

	var (
		mu       sync.Mutex
		answered []string // ids of events answered 200
		failed   int      // requests that got no 200
		wg       sync.WaitGroup
	)
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(answered) }
	done := make(chan struct{})
	client := &http.Client{Timeout: 10 * time.Second}
	for p := range 8 {
		wg.Go(func() {
			for r := 0; ; r++ {
				select {
				case <-done:
					return
				default:
				}
				n := 1 + 49*(p%2) // half the producers post single events, half batches of 50
				var ids []string
				var body strings.Builder
				for i := range n {
					id := fmt.Sprintf("ingest-%d-%d-%d", p, r, i)
					ids = append(ids, id)
					fmt.Fprintf(&body, `{"id":%q,"type":"VOLUME_CREATE"}`+"\n", id)
				}
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body.String()))
				req.Header.Set("Content-Type", map[bool]string{true: "application/json", false: "application/x-ndjson"}[n == 1])
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				ok := err == nil && resp.StatusCode == http.StatusOK
				if err == nil {
					resp.Body.Close()
				}
				mu.Lock()
				if ok {
					answered = append(answered, ids...)
				} else {
					failed++
				}
				mu.Unlock()
				if !ok {
					time.Sleep(50 * time.Millisecond) // the worker is restarting: the producer's pace, not synchronisation
				}
			}
		})
	}
	var back []time.Duration
	for k := range kills {
		mark := (k + 1) * 2000
		testutil.Eventually(t, time.Minute, func() bool { return count() >= mark }, "%d events answered 200 before kill %d", mark, k+1)
		if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = proc.cmd.Wait()
		killedAt, before := time.Now(), count()
		proc = startWorkerProc(t, cfg)
		testutil.Eventually(t, time.Minute, func() bool { return count() > before }, "ingest answers 200 again after kill %d", k+1)
		back = append(back, time.Since(killedAt))
	}
	close(done)
	wg.Wait()
	mu.Lock()
	ids, failures := append([]string(nil), answered...), failed
	mu.Unlock()
	testutil.Eventually(t, 2*time.Minute, func() bool { return len(missing(rcv, ids)) == 0 },
		"all %d events answered 200 delivered after %d SIGKILLs: %d missing", len(ids), kills, len(missing(rcv, ids)))
	dups := 0
	for _, id := range ids {
		dups += max(rcv.Seen(id)-1, 0)
	}
	window := config.Sink{SinkCommon: config.SinkCommon{Concurrency: 64}}.MaxAckPending() // writeConfig's sink
	t.Logf("chaos ingest-kills: 8 HTTP producers (single events and batches of 50), %d SIGKILLs; answered 200 %d, delivered %d, lost 0, duplicates %d (bound %d); %d requests failed while the worker was down (not owed); ingest answered 200 again %s after each kill",
		kills, len(ids), len(ids), dups, kills*window, failures, roundAll(back))
	if dups > kills*window {
		t.Errorf("%d duplicate deliveries, more than one in-flight window (%d) per kill", dups, window)
	}
}

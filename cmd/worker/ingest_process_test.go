package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/courierhq/courier/internal/testutil"
)

// TestSIGKILLRightAfterA200LosesNothing posts events over HTTP from
// several producers, SIGKILLs the worker the moment one request is
// answered 200, restarts it, and checks that every event answered 200 is
// delivered: the answer comes only after the outbox's fsync.
func TestSIGKILLRightAfterA200LosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("process crash test skipped with -short")
	}
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
	pub := waitReady(t, fmt.Sprintf("nats://127.0.0.1:%d", port))
	pub.Close()

	var (
		mu       sync.Mutex
		answered []string // ids of events answered 200
		killOnce sync.Once
	)
	killed := make(chan struct{})
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Go(func() {
			for r := 0; ; r++ {
				select {
				case <-killed:
					return
				default:
				}
				// Half the producers post single events, half NDJSON batches.
				var ids []string
				var body strings.Builder
				n := 1
				if p%2 == 1 {
					n = 50
				}
				for i := range n {
					id := fmt.Sprintf("http-%d-%d-%d", p, r, i)
					ids = append(ids, id)
					fmt.Fprintf(&body, `{"id":%q,"type":"VOLUME_CREATE"}`+"\n", id)
				}
				ct := "application/x-ndjson"
				if n == 1 {
					ct = "application/json"
				}
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body.String()))
				req.Header.Set("Content-Type", ct)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				if err != nil {
					continue // the worker is gone, or not up yet
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					continue
				}
				mu.Lock()
				answered = append(answered, ids...)
				enough := len(answered) >= 2000
				mu.Unlock()
				if enough {
					killOnce.Do(func() {
						_ = proc.cmd.Process.Signal(syscall.SIGKILL)
						close(killed)
					})
				}
			}
		})
	}
	select {
	case <-killed:
	case <-time.After(60 * time.Second):
		t.Fatal("fewer than 2000 events answered 200 in 60s")
	}
	wg.Wait()
	_ = proc.cmd.Wait()

	startWorkerProc(t, cfg)
	mu.Lock()
	ids := append([]string(nil), answered...)
	mu.Unlock()
	testutil.Eventually(t, 60*time.Second, func() bool { return len(missing(rcv, ids)) == 0 },
		"all %d events answered 200 delivered after the SIGKILL: %d missing", len(ids), len(missing(rcv, ids)))

	// The restarted worker serves ingest again.
	testutil.Eventually(t, 30*time.Second, func() bool {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader([]byte(`{"type":"AFTER"}`)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "ingest answers after the restart")
}

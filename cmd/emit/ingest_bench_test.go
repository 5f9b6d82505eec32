package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
)

// ingestBenchEvents is how many events each run stores; each event is the
// same 256-byte envelope the other benchmarks use.
const ingestBenchEvents = 20000

func benchLine(round, i int) string {
	return fmt.Sprintf(`{"id":"b%d-%07d","type":"VOLUME_CREATE","data":{"name":"gv1","note":"%0180d"}}`, round, i, 0)
}

// BenchmarkIngest compares, in one run on one node (fsync before every
// acknowledgement, no sink), the ways a producer stores events: HTTP with
// one event per request from 64 concurrent clients, HTTP with NDJSON
// batches of 500, and emit --file. It reports events/s.
func BenchmarkIngest(b *testing.B) {
	node := testutil.StartNode(b, "ingest:\n  listen: 127.0.0.1:0\n", nil)
	hs := httptest.NewServer(node.IngestHandler())
	b.Cleanup(hs.Close)
	url := hs.URL + "/v1/events"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	round := 0

	post := func(b *testing.B, contentType, body string) {
		resp, err := client.Post(url, contentType, strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	// clients posts bodies from workers goroutines and reports events/s.
	clients := func(b *testing.B, workers, perRequest int, contentType string) {
		for b.Loop() {
			round++
			var wg sync.WaitGroup
			next := make(chan int)
			start := time.Now()
			for range workers {
				wg.Go(func() {
					for first := range next {
						var body strings.Builder
						for i := first; i < first+perRequest; i++ {
							body.WriteString(benchLine(round, i))
							body.WriteByte('\n')
						}
						post(b, contentType, body.String())
					}
				})
			}
			for i := 0; i < ingestBenchEvents; i += perRequest {
				next <- i
			}
			close(next)
			wg.Wait()
			b.ReportMetric(ingestBenchEvents/time.Since(start).Seconds(), "events/s")
		}
	}
	b.Run("http-1-event-64-clients", func(b *testing.B) { clients(b, 64, 1, "application/json") })
	b.Run("http-ndjson-500-4-clients", func(b *testing.B) { clients(b, 4, 500, "application/x-ndjson") })
	// The Go library with 64 producers that each wait for their event:
	// what the HTTP endpoint adds to one event per request.
	b.Run("library-64-producers", func(b *testing.B) {
		pub := node.Publisher(b)
		for b.Loop() {
			round++
			var wg sync.WaitGroup
			next := make(chan int)
			start := time.Now()
			for range 64 {
				wg.Go(func() {
					for i := range next {
						e, err := event.Decode([]byte(benchLine(round, i)))
						if err == nil {
							_, err = pub.Emit(context.Background(), e)
						}
						if err != nil {
							b.Error(err)
						}
					}
				})
			}
			for i := range ingestBenchEvents {
				next <- i
			}
			close(next)
			wg.Wait()
			b.ReportMetric(ingestBenchEvents/time.Since(start).Seconds(), "events/s")
		}
	})
	b.Run("emit-file", func(b *testing.B) {
		for b.Loop() {
			round++
			var file bytes.Buffer
			for i := range ingestBenchEvents {
				file.WriteString(benchLine(round, i))
				file.WriteByte('\n')
			}
			path := filepath.Join(b.TempDir(), "events.jsonl")
			if err := os.WriteFile(path, file.Bytes(), 0o600); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			var stderr bytes.Buffer
			args := []string{"--url", node.URL(), "--no-spool", "--file", path}
			if code := run(context.Background(), args, strings.NewReader(""), io.Discard, &stderr); code != 0 {
				b.Fatalf("emit --file: exit %d: %s", code, stderr.String())
			}
			b.ReportMetric(ingestBenchEvents/time.Since(start).Seconds(), "events/s")
		}
	})
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// tally records, per event index, the time of the first receipt and how
// many receipts there were, and signals once every event arrived. Every
// endpoint (webhook receiver, AMQP queue, Kafka topic) counts with one.
type tally struct {
	firstAt  []atomic.Int64
	accepted []atomic.Int32
	distinct atomic.Int64
	unknown  atomic.Int64 // receipts whose id is not one the harness emitted
	n        int64
	done     chan struct{}
	half     chan struct{} // closed once half of the events arrived
}

func newTally(n int) *tally {
	return &tally{firstAt: make([]atomic.Int64, n), accepted: make([]atomic.Int32, n), n: int64(n),
		done: make(chan struct{}), half: make(chan struct{})}
}

// record counts one receipt of the event with this id, now.
func (t *tally) record(id string) {
	idx, ok := eventIndex(id)
	if !ok || idx >= len(t.firstAt) {
		t.unknown.Add(1)
		return
	}
	now := time.Now().UnixNano()
	if t.accepted[idx].Add(1) == 1 {
		t.firstAt[idx].Store(now)
		// Add returns each count exactly once, so each channel closes once.
		d := t.distinct.Add(1)
		if d == (t.n+1)/2 {
			close(t.half)
		}
		if d == t.n {
			close(t.done)
		}
	}
}

// wait returns once every event arrived at least once, or with an error
// when the deadline passes first.
func (t *tally) wait(within time.Duration) error {
	tm := time.NewTimer(within)
	defer tm.Stop()
	select {
	case <-t.done:
		return nil
	case <-tm.C:
		return fmt.Errorf("only %d of %d events received by the deadline (-timeout)", t.distinct.Load(), t.n)
	}
}

// lostAndDuplicates counts events never received, and receipts beyond the
// first.
func (t *tally) lostAndDuplicates() (lost, dups int) {
	for i := range t.accepted {
		switch c := t.accepted[i].Load(); {
		case c == 0:
			lost++
		case c > 1:
			dups += int(c - 1)
		}
	}
	return lost, dups
}

// first is the receipt time of event i in Unix nanoseconds, 0 if none.
func (t *tally) first(i int) int64 { return t.firstAt[i].Load() }

// earliest is the first receipt of any event (Unix ns), 0 if none.
func (t *tally) earliest() int64 {
	var e int64
	for i := range t.firstAt {
		if at := t.firstAt[i].Load(); at != 0 && (e == 0 || at < e) {
			e = at
		}
	}
	return e
}

func (t *tally) counts() *tally { return t }

// endpoint is where a system under test delivers: it says how to reach it
// (target) and counts what arrived (its tally).
type endpoint interface {
	target() sinkTarget
	counts() *tally
	refusedCount() int64
	close()
}

// sinkTarget is what a system needs to deliver to an endpoint.
type sinkTarget struct {
	Kind     string // webhook | amqp | kafka
	URL      string // webhook URL, or the AMQP broker's URI
	Exchange string // amqp: where both systems publish
	Brokers  []string
	Topic    string // kafka
}

// receiver is the webhook endpoint both systems deliver to: a plain
// net/http server in the same process as the system under test, so both
// pay the same HTTP cost on the same cores. Requests are identified by the
// webhook-id header.
type receiver struct {
	*tally
	srv     *http.Server
	ln      net.Listener
	failPct int          // share of requests answered 503, chosen at random
	total   atomic.Int64 // every request, refused ones included
	refused atomic.Int64
}

func newReceiver(n, failPct int) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("receiver listen: %w", err)
	}
	r := &receiver{tally: newTally(n), ln: ln, failPct: failPct}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *receiver) target() sinkTarget { return sinkTarget{Kind: "webhook", URL: r.URL()} }

func (r *receiver) refusedCount() int64 { return r.refused.Load() }

// URL of the endpoint.
func (r *receiver) URL() string { return "http://" + r.ln.Addr().String() + "/hook" }

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	// Read the whole body as a real receiver would before answering.
	_, _ = io.Copy(io.Discard, req.Body)
	r.total.Add(1)
	if r.failPct > 0 && rand.IntN(100) < r.failPct {
		r.refused.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	// An id that is not ours is accepted too: refusing it would only
	// have it retried forever.
	r.record(req.Header.Get("webhook-id"))
	w.WriteHeader(http.StatusOK)
}

func (r *receiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		_ = r.srv.Close()
	}
}

// eventID is the id of the i-th event: the same ids for both systems, and
// the index can be read back from the webhook-id header without a map.
func eventID(i int) string { return fmt.Sprintf("ev-%08d", i) }

func eventIndex(id string) (int, bool) {
	s, ok := strings.CutPrefix(id, "ev-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	return i, err == nil && i >= 0
}

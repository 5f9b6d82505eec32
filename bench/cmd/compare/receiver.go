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
	"sync"
	"sync/atomic"
	"time"
)

// receiver is the webhook endpoint both systems deliver to: a plain
// net/http server in the same process as the system under test, so both
// pay the same HTTP cost on the same cores. It records, per event index,
// the time of the first accepted (200) request and how many were accepted.
type receiver struct {
	srv      *http.Server
	ln       net.Listener
	failPct  int // share of requests answered 503, chosen at random
	firstAt  []atomic.Int64
	accepted []atomic.Int32
	distinct atomic.Int64
	total    atomic.Int64 // every request, refused ones included
	refused  atomic.Int64
	unknown  atomic.Int64 // requests whose id is not one the harness emitted
	n        int64
	done     chan struct{}
	once     sync.Once
}

func newReceiver(n, failPct int) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("receiver listen: %w", err)
	}
	r := &receiver{
		ln: ln, failPct: failPct, n: int64(n),
		firstAt: make([]atomic.Int64, n), accepted: make([]atomic.Int32, n),
		done: make(chan struct{}),
	}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

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
	idx, ok := eventIndex(req.Header.Get("webhook-id"))
	if !ok || idx >= len(r.firstAt) {
		r.unknown.Add(1)
		w.WriteHeader(http.StatusOK) // not ours; accepting it keeps it from being retried forever
		return
	}
	now := time.Now().UnixNano()
	if r.accepted[idx].Add(1) == 1 {
		r.firstAt[idx].Store(now)
		if r.distinct.Add(1) == r.n {
			r.once.Do(func() { close(r.done) })
		}
	}
	w.WriteHeader(http.StatusOK)
}

// wait returns once every event was accepted at least once, or with an
// error when the deadline passes first.
func (r *receiver) wait(within time.Duration) error {
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-r.done:
		return nil
	case <-t.C:
		return fmt.Errorf("only %d of %d events received by the deadline (-timeout)", r.distinct.Load(), r.n)
	}
}

// lostAndDuplicates counts events never accepted, and acceptances beyond
// the first.
func (r *receiver) lostAndDuplicates() (lost, dups int) {
	for i := range r.accepted {
		switch c := r.accepted[i].Load(); {
		case c == 0:
			lost++
		case c > 1:
			dups += int(c - 1)
		}
	}
	return lost, dups
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

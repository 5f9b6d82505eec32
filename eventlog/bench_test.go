package eventlog_test

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/eventlog"
	"github.com/courierhq/courier/internal/testutil"
)

// The event log's benchmarks:
//
//	go test -run '^$' -bench . -benchtime 3x ./eventlog/
//
// BenchmarkIngest measures AddEvents in the worker's batches of 500 (target
// >= 20k events/s; one op is 20 batches); BenchmarkListTypeAndDate one page
// of List over a log of COURIER_BENCH_LOG_ROWS events (default 1,000,000,
// 200,000 on PostgreSQL; target < 100 ms over 1M). CI's smoke run sets
// COURIER_BENCH_LOG_ROWS=20000 and -benchtime 1x.

const (
	ingestBatch = 500  // the worker's batch size
	ingestOp    = 20   // batches per benchmark op: one op is 10,000 events
	fillBatch   = 5000 // batch size filling the list benchmarks' log
	dataSize    = 256  // bytes of JSON data per event
	logSpan     = 30 * 24 * time.Hour
)

// logStart is the first event's time; events spread over logSpan from it.
var logStart = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)

// benchTypes are the event types, with the resource and the job each names.
var benchTypes = []struct{ typ, resource, job string }{
	{"VM.START", "VirtualMachine", "starting Vm"},
	{"VM.STOP", "VirtualMachine", "stopping Vm"},
	{"VM.CREATE", "VirtualMachine", "deploying Vm"},
	{"VOLUME.CREATE", "Volume", "creating volume"},
	{"VOLUME.DELETE", "Volume", "deleting volume"},
	{"SNAPSHOT.CREATE", "Snapshot", "creating snapshot"},
	{"NETWORK.CREATE", "Network", "creating network"},
	{"USER.LOGIN", "User", "logging in user"},
}

var benchStates = []event.State{event.StateCreated, event.StateScheduled, event.StateStarted, event.StateCompleted}

// gen makes CloudStack-shaped events: event i of a log of n is at
// logStart + i/n of logSpan (so ids, UUIDv7-like, grow with time as a live
// log's do), its type, account (of 20), state and level drawn from rng.
type gen struct {
	rng *rand.Rand
	n   int
	pad string
}

func newGen(seed uint64, n int) *gen {
	return &gen{rng: rand.New(rand.NewPCG(seed, 0x636f7572696572)), n: n, pad: strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789", 8)}
}

// errorShare of the events are errors, with "InsufficientCapacity" in their
// data: what the type+date+keyword benchmark looks for.
const errorShare = 10

func (g *gen) event(i int) event.Envelope {
	step := logSpan / time.Duration(g.n)
	at := logStart.Add(time.Duration(i%g.n)*step + time.Duration(g.rng.Int64N(int64(max(step, 1)))))
	t := benchTypes[g.rng.IntN(len(benchTypes))]
	acct := g.rng.IntN(20)
	res := g.rng.IntN(50000)
	level, reason := event.LevelInfo, "OK"
	if g.rng.IntN(100) < errorShare {
		level, reason = event.LevelError, "InsufficientCapacity"
	}
	e := event.Envelope{
		ID:           uuid7(at, uint64(i)),
		Type:         t.typ,
		Source:       "cloudstack",
		Node:         "ms-" + strconv.Itoa(acct%3),
		Time:         at,
		Level:        level,
		State:        benchStates[g.rng.IntN(len(benchStates))],
		Description:  fmt.Sprintf("Successfully completed %s. %s Id: %d", t.job, t.resource, res),
		Account:      fmt.Sprintf("account-%02d", acct),
		Domain:       "ROOT/customers/d" + strconv.Itoa(acct%5),
		User:         fmt.Sprintf("user-%02d", acct),
		ResourceID:   strconv.Itoa(res),
		ResourceType: t.resource,
	}
	data := fmt.Sprintf(`{"entity":%q,"entityuuid":"%s","jobid":"%s","status":"%s","zone":"zone-%d","details":"`,
		"com.cloud."+t.resource, uuid7(at, uint64(res)<<32), jobID(i), reason, acct%4)
	data += g.pad[:dataSize-len(data)-2] + `"}`
	e.Data = json.RawMessage(data)
	return e
}

// uuid7 is a UUIDv7-shaped id: the time's milliseconds, then seq spread
// over the random bits (unique for distinct seq).
func uuid7(at time.Time, seq uint64) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[0:8], uint64(at.UnixMilli())<<16|0x7000|(seq*0x2545F4914F6CDD1D>>52))
	binary.BigEndian.PutUint64(b[8:16], 0x8000000000000000|(seq*0x9E3779B97F4A7C15)&(1<<62-1))
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// jobID is unique to event i: a keyword that matches one event.
func jobID(i int) string { return fmt.Sprintf("job-%08x", uint32(i)*2654435761) }

func (g *gen) batch(from, n int) []event.Envelope {
	out := make([]event.Envelope, n)
	for k := range out {
		out[k] = g.event(from + k)
	}
	return out
}

// benchStore opens an empty log; postgres needs the test database.
func benchStore(b *testing.B, backend string) (s *eventlog.Store, url string) {
	b.Helper()
	if backend == "postgres" {
		url = testutil.PostgresSchema(b)
	}
	s, err := eventlog.Open(context.Background(), url, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, url
}

var backendNames = []string{"sqlite", "postgres"}

func BenchmarkIngest(b *testing.B) {
	for _, backend := range backendNames {
		b.Run(backend, func(b *testing.B) {
			s, _ := benchStore(b, backend)
			ctx := context.Background()
			g := newGen(1, 1_000_000)
			next := 0
			for b.Loop() {
				b.StopTimer()
				batches := make([][]event.Envelope, ingestOp)
				for k := range batches {
					batches[k] = g.batch(next, ingestBatch)
					next += ingestBatch
				}
				b.StartTimer()
				for _, batch := range batches {
					n, err := s.AddEvents(ctx, batch)
					if err != nil {
						b.Fatal(err)
					}
					if n != len(batch) {
						b.Fatalf("AddEvents added %d of %d new events", n, len(batch))
					}
				}
			}
			sec := b.Elapsed().Seconds()
			if next == 0 || sec == 0 {
				b.Fatal("nothing ingested")
			}
			b.ReportMetric(float64(next)/sec, "events/s")
			b.ReportMetric(sec*1000/float64(next/ingestBatch), "ms/batch")
		})
	}
}

// logRows is the list benchmarks' log size: COURIER_BENCH_LOG_ROWS, else
// 1,000,000 on SQLite and 200,000 on PostgreSQL, whose fill (one round trip
// per event in AddEvents, about 8k events/s here) would take over two
// minutes for 1M; set COURIER_BENCH_LOG_ROWS=1000000 to time that too.
func logRows(b *testing.B, backend string) int {
	n := 1_000_000
	if backend == "postgres" {
		n = 200_000
	}
	if v := os.Getenv("COURIER_BENCH_LOG_ROWS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1000 {
			b.Fatalf("COURIER_BENCH_LOG_ROWS=%q: want a number from 1000", v)
		}
	}
	return n
}

// listCase is a filter and how many events of the log match it (counted
// while filling).
type listCase struct {
	name  string
	f     eventlog.Filter
	match func(*event.Envelope) bool
	count int
}

func listCases(n int) []*listCase {
	// A one-day window in the middle of the log.
	t0 := logStart.Add(15 * 24 * time.Hour)
	t1 := t0.Add(24*time.Hour - time.Microsecond)
	inDay := func(e *event.Envelope) bool {
		return e.Type == "VM.START" && !e.Time.Before(t0) && !e.Time.After(t1)
	}
	contains := func(e *event.Envelope, kw string) bool {
		return strings.Contains(strings.ToLower(e.Type), kw) || strings.Contains(strings.ToLower(e.Description), kw) ||
			strings.Contains(strings.ToLower(string(e.Data)), kw)
	}
	rare := jobID(n / 3) // one event, a third of the way into the log
	return []*listCase{
		{
			name:  "type+date",
			f:     eventlog.Filter{Type: "VM.START", Start: t0, End: t1},
			match: inDay,
		},
		{
			name:  "type+date+keyword",
			f:     eventlog.Filter{Type: "VM.START", Start: t0, End: t1, Keyword: "InsufficientCapacity"},
			match: func(e *event.Envelope) bool { return inDay(e) && contains(e, "insufficientcapacity") },
		},
		{
			// No index helps: every event is read to find the one.
			name:  "keyword-scan",
			f:     eventlog.Filter{Keyword: rare},
			match: func(e *event.Envelope) bool { return contains(e, rare) },
		},
	}
}

// BenchmarkListTypeAndDate times one page of List (the default 100) over a
// log filled once per backend (batches of 5000; see logRows for its size).
func BenchmarkListTypeAndDate(b *testing.B) {
	for _, backend := range backendNames {
		b.Run(backend, func(b *testing.B) {
			n := logRows(b, backend)
			s, url := benchStore(b, backend)
			ctx := context.Background()
			cases := listCases(n)
			g := newGen(2, n)
			start := time.Now()
			for from := 0; from < n; from += fillBatch {
				batch := g.batch(from, min(fillBatch, n-from))
				for k := range batch {
					for _, c := range cases {
						if c.match(&batch[k]) {
							c.count++
						}
					}
				}
				added, err := s.AddEvents(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				if added != len(batch) {
					b.Fatalf("fill: AddEvents added %d of %d new events", added, len(batch))
				}
			}
			fill := time.Since(start)
			if backend == "postgres" {
				analyze(b, url)
			}
			for _, c := range cases {
				b.Run(c.name, func(b *testing.B) {
					want := min(c.count, eventlog.DefaultPageSize)
					if want == 0 {
						b.Fatalf("the log holds no event matching %+v: fix the benchmark's data", c.f)
					}
					got := 0
					for b.Loop() {
						page, err := s.List(ctx, c.f)
						if err != nil {
							b.Fatal(err)
						}
						got = len(page)
						if got != want {
							b.Fatalf("List(%+v) returned %d events, want %d", c.f, got, want)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
					b.ReportMetric(float64(n), "log_rows")
					b.ReportMetric(float64(c.count), "matches")
					b.ReportMetric(float64(got), "page")
					b.ReportMetric(fill.Seconds(), "fill_s")
				})
			}
		})
	}
}

// analyze updates PostgreSQL's statistics, as autovacuum would soon after
// a bulk load, so the plans timed are the ones a running log gets.
func analyze(b *testing.B, url string) {
	b.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), "ANALYZE events"); err != nil {
		b.Fatal(err)
	}
}

// Command compare runs Courier and a Watermill pipeline side by side on this
// machine, with the same event size, the same in-process webhook receiver
// and equal durability (JetStream file storage, fsync before every ack),
// and prints one table (or JSON with --json).
//
// Each run of one system in one scenario happens in a child process of
// this binary (-run-one), so the systems never share a heap, a GC or a
// runtime, and the parent reads each child's CPU time and peak RSS.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// scenario is one row group of the table. The numbers follow issue 7.
type scenario struct {
	Name      string
	Title     string
	Kind      string // emit | e2e | backlog
	N, QuickN int
	Producers int
	Rate      int
	FailPct   int
}

var scenarios = []scenario{
	{Name: "emit-1", Title: "(1) emit only, 1 producer", Kind: "emit", N: 3000, QuickN: 200, Producers: 1},
	{Name: "emit-64", Title: "(1) emit only, 64 producers", Kind: "emit", N: 20000, QuickN: 2000, Producers: 64},
	{Name: "e2e-fast", Title: "(2) end to end, 200, queued as fast as possible", Kind: "e2e", N: 20000, QuickN: 2000},
	{Name: "e2e-1k", Title: "(2) end to end, 200, paced 1k/s", Kind: "e2e", N: 5000, QuickN: 500, Rate: 1000},
	{Name: "e2e503-fast", Title: "(3) end to end, 10% 503, as fast as possible", Kind: "e2e", N: 20000, QuickN: 2000, FailPct: 10},
	{Name: "e2e503-1k", Title: "(3) end to end, 10% 503, paced 1k/s", Kind: "e2e", N: 5000, QuickN: 500, Rate: 1000, FailPct: 10},
	{Name: "backlog-10k", Title: "(4) backlog of 10k, delivery down, then drain", Kind: "backlog", N: 10000, QuickN: 1000},
	{Name: "backlog-100k", Title: "(4) backlog of 100k, delivery down, then drain", Kind: "backlog", N: 100000, QuickN: 2000},
}

func findScenario(name string) (scenario, bool) {
	for _, s := range scenarios {
		if s.Name == name {
			return s, true
		}
	}
	return scenario{}, false
}

var systems = []string{"courier", "watermill"}

func main() {
	var (
		quick       = flag.Bool("quick", false, "smoke run: small N, checks only that every run completes with 0 lost")
		jsonOut     = flag.Bool("json", false, "print the results as JSON instead of a table")
		jsonFile    = flag.String("json-out", "", "also write the results as JSON to this file")
		only        = flag.String("only", "", "comma-separated scenario names to run (default: all)")
		concurrency = flag.Int("concurrency", 64, "deliveries in flight, for both systems")
		timeout     = flag.Duration("timeout", 10*time.Minute, "limit for one run of one system")
		runOneSys   = flag.String("run-one", "", "internal: run one system (courier|watermill) in this process and print its result as JSON")
		scenarioArg = flag.String("scenario", "", "internal, with -run-one: the scenario name")
		nArg        = flag.Int("n", 0, "internal, with -run-one: number of events")
	)
	flag.Parse()
	if *runOneSys != "" {
		os.Exit(child(*runOneSys, *scenarioArg, *nArg, *concurrency, *timeout))
	}
	todo := scenarios
	if *only != "" {
		todo = nil
		for name := range strings.SplitSeq(*only, ",") {
			s, ok := findScenario(strings.TrimSpace(name))
			if !ok {
				fmt.Fprintf(os.Stderr, "compare: unknown scenario %q\n", name)
				os.Exit(2)
			}
			todo = append(todo, s)
		}
	}
	os.Exit(parent(todo, *quick, *jsonOut, *jsonFile, *concurrency, *timeout))
}

func child(sys, name string, n, concurrency int, timeout time.Duration) int {
	s, ok := findScenario(name)
	if !ok {
		fmt.Fprintf(os.Stderr, "compare: unknown scenario %q\n", name)
		return 2
	}
	if n <= 0 {
		n = s.N
	}
	res, err := runOne(params{
		System: sys, Kind: s.Kind, N: n, Producers: s.Producers, Rate: s.Rate,
		FailPct: s.FailPct, Concurrency: concurrency, Timeout: timeout,
	})
	res.Scenario = name
	if err != nil {
		fmt.Fprintf(os.Stderr, "compare: %s %s: %v\n", sys, name, err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintf(os.Stderr, "compare: %v\n", err)
		return 1
	}
	return 0
}

type report struct {
	Machine  machine  `json:"machine"`
	Command  string   `json:"command"`
	Quick    bool     `json:"quick"`
	Started  string   `json:"started"`
	Results  []result `json:"results"`
	Failures []string `json:"failures,omitempty"`
}

type machine struct {
	Cores       int    `json:"cores"`
	CPU         string `json:"cpu"`
	OS          string `json:"os"`
	Go          string `json:"go"`
	NATSServer  string `json:"nats_server"`
	Watermill   string `json:"watermill"`
	WatermillJS string `json:"watermill_nats"`
}

func parent(todo []scenario, quick, jsonOut bool, jsonFile string, concurrency int, timeout time.Duration) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "compare: %v\n", err)
		return 1
	}
	rep := report{Machine: describeMachine(), Command: strings.Join(os.Args, " "), Quick: quick, Started: time.Now().UTC().Format(time.RFC3339)}
	for k, s := range todo {
		n := s.N
		if quick {
			n = s.QuickN
		}
		// Alternate which system goes first, so neither always runs on a
		// machine warmed (page cache, CPU frequency) by the other.
		order := systems
		if k%2 == 1 {
			order = []string{systems[1], systems[0]}
		}
		for _, sys := range order {
			fmt.Fprintf(os.Stderr, "compare: %-12s %-9s n=%d ... ", s.Name, sys, n)
			res, err := runChild(exe, sys, s.Name, n, concurrency, timeout)
			if err != nil {
				fmt.Fprintln(os.Stderr, "FAILED")
				rep.Failures = append(rep.Failures, fmt.Sprintf("%s %s: %v", s.Name, sys, err))
				continue
			}
			fmt.Fprintf(os.Stderr, "%.2fs, %.0f events/s, lost %d, dup %d\n", res.Seconds, res.EventsPerSec, res.Lost, res.Duplicates)
			if res.Lost != 0 {
				rep.Failures = append(rep.Failures, fmt.Sprintf("%s %s: %d events lost", s.Name, sys, res.Lost))
			}
			rep.Results = append(rep.Results, res)
		}
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		fmt.Fprintf(os.Stderr, "compare: encode results: %v\n", err)
		return 1
	}
	if jsonFile != "" {
		if err := os.WriteFile(jsonFile, append(js, '\n'), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "compare: %v\n", err)
			return 1
		}
	}
	if jsonOut {
		fmt.Println(string(js))
	} else {
		printTable(os.Stdout, rep, todo)
	}
	if len(rep.Failures) > 0 {
		for _, f := range rep.Failures {
			fmt.Fprintln(os.Stderr, "compare: FAIL:", f)
		}
		return 1
	}
	return 0
}

// runChild runs one system in one scenario in a child process and adds
// the child's peak RSS, which only the parent can read.
func runChild(exe, sys, name string, n, concurrency int, timeout time.Duration) (result, error) {
	cmd := exec.Command(exe, "-run-one", sys, "-scenario", name, "-n", strconv.Itoa(n),
		"-concurrency", strconv.Itoa(concurrency), "-timeout", timeout.String())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return result{}, fmt.Errorf("%w: %s", err, lastLines(stderr.String(), 15))
	}
	var res result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return result{}, fmt.Errorf("child output: %w: %q", err, stdout.String())
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.MaxRSSMiB = float64(ru.Maxrss) / 1024 // kilobytes on Linux
	}
	return res, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func describeMachine() machine {
	m := machine{Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version(), NATSServer: server.VERSION}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		_ = f.Close()
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/ThreeDotsLabs/watermill":
				m.Watermill = d.Version
			case "github.com/ThreeDotsLabs/watermill-nats/v2":
				m.WatermillJS = d.Version
			}
		}
	}
	return m
}

// row is one line of the table: a metric of one scenario for both systems.
type row struct {
	metric string
	get    func(result) float64
	format string
}

func printTable(w io.Writer, rep report, todo []scenario) {
	m := rep.Machine
	fmt.Fprintf(w, "machine: %d cores (%s), %s, %s; nats-server %s; watermill %s, watermill-nats %s\n",
		m.Cores, m.CPU, m.OS, m.Go, m.NATSServer, m.Watermill, m.WatermillJS)
	fmt.Fprintf(w, "both: 256 B events, JetStream file storage with fsync before every ack, receiver in the same process; ratio = Courier / Watermill\n")
	if rep.Quick {
		fmt.Fprintln(w, "QUICK run: small N, a smoke test; the figures mean little")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| scenario\t| metric\t| Courier\t| Watermill\t| ratio\t|")
	fmt.Fprintln(tw, "| ---\t| ---\t| ---\t| ---\t| ---\t|")
	for _, s := range todo {
		by := map[string]*result{}
		for i := range rep.Results {
			if r := &rep.Results[i]; r.Scenario == s.Name {
				by[r.System] = r
			}
		}
		n := s.N
		for _, r := range by {
			n = r.N
		}
		for j, rw := range rowsFor(s) {
			cells := make([]string, 2)
			vals := make([]float64, 2)
			for k, sys := range systems {
				cells[k] = "FAILED"
				if r := by[sys]; r != nil {
					vals[k] = rw.get(*r)
					cells[k] = fmt.Sprintf(rw.format, vals[k])
				}
			}
			ratio := ""
			if by["courier"] != nil && by["watermill"] != nil && vals[1] != 0 {
				ratio = fmt.Sprintf("%.2f", vals[0]/vals[1])
			}
			title := ""
			if j == 0 {
				title = fmt.Sprintf("%s, n=%d", s.Title, n)
			}
			fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s\t| %s\t|\n", title, rw.metric, cells[0], cells[1], ratio)
		}
	}
	_ = tw.Flush()
	if len(rep.Failures) > 0 {
		fmt.Fprintln(w, "\nfailures:")
		for _, f := range rep.Failures {
			fmt.Fprintln(w, "  "+f)
		}
	}
}

func rowsFor(s scenario) []row {
	var rows []row
	switch s.Kind {
	case "emit":
		rows = append(rows, row{"durable events/s (higher is better)", func(r result) float64 { return r.EventsPerSec }, "%.0f"})
	case "e2e":
		rows = append(rows,
			row{"events/s, first emit to last receipt", func(r result) float64 { return r.EventsPerSec }, "%.0f"},
			row{"p50 emit-to-receipt ms", func(r result) float64 { return r.P50ms }, "%.2f"},
			row{"p99 emit-to-receipt ms", func(r result) float64 { return r.P99ms }, "%.2f"},
			row{"max emit-to-receipt ms", func(r result) float64 { return r.MaxMs }, "%.0f"})
	case "backlog":
		rows = append(rows,
			row{"time to queue s", func(r result) float64 { return r.QueueSeconds }, "%.2f"},
			row{"time to drain s (lower is better)", func(r result) float64 { return r.Seconds }, "%.2f"},
			row{"drain events/s", func(r result) float64 { return r.EventsPerSec }, "%.0f"})
	}
	return append(rows,
		row{"lost (must be 0)", func(r result) float64 { return float64(r.Lost) }, "%.0f"},
		row{"duplicates", func(r result) float64 { return float64(r.Duplicates) }, "%.0f"},
		row{"(6) CPU s per 100k events", func(r result) float64 { return r.CPUPer100k }, "%.2f"},
		row{"(6) peak RSS MiB", func(r result) float64 { return r.MaxRSSMiB }, "%.0f"})
}

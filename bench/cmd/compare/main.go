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
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
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
	Sink      string // webhook (default) | amqp | kafka
	Size      int    // bytes per event; 0 means defaultEventSize
	Types     int    // event types the events cycle through; 0 means one
	N, QuickN int
	Producers int
	Rate      int
	FailPct   int
	// Big scenarios take several minutes per system: they run only when
	// named with -only or with -big.
	Big bool
	// MinTimeout raises the per-run limit for this scenario when -timeout
	// is not given.
	MinTimeout time.Duration
}

func (s scenario) sink() string {
	if s.Sink == "" {
		return "webhook"
	}
	return s.Sink
}

func (s scenario) size() int {
	if s.Size == 0 {
		return defaultEventSize
	}
	return s.Size
}

const kib4 = 4096

var scenarios = []scenario{
	{Name: "emit-1", Title: "(1) emit only, 1 producer", Kind: "emit", N: 3000, QuickN: 200, Producers: 1},
	{Name: "emit-1-4k", Title: "(1) emit only, 1 producer, 4 KiB", Kind: "emit", Size: kib4, N: 3000, QuickN: 100, Producers: 1},
	{Name: "emit-64", Title: "(1) emit only, 64 producers", Kind: "emit", N: 20000, QuickN: 2000, Producers: 64},
	{Name: "emit-64-4k", Title: "(1) emit only, 64 producers, 4 KiB", Kind: "emit", Size: kib4, N: 20000, QuickN: 1000, Producers: 64},
	{Name: "e2e-fast", Title: "(2) end to end, 200, queued as fast as possible", Kind: "e2e", N: 20000, QuickN: 2000},
	{Name: "e2e-fast-4k", Title: "(2) end to end, 200, as fast as possible, 4 KiB", Kind: "e2e", Size: kib4, N: 20000, QuickN: 1000},
	{Name: "e2e-1k", Title: "(2) end to end, 200, paced 1k/s", Kind: "e2e", N: 5000, QuickN: 500, Rate: 1000},
	{Name: "e2e-1k-4k", Title: "(2) end to end, 200, paced 1k/s, 4 KiB", Kind: "e2e", Size: kib4, N: 5000, QuickN: 300, Rate: 1000},
	{Name: "e2e503-fast", Title: "(3) end to end, 10% 503, as fast as possible", Kind: "e2e", N: 20000, QuickN: 2000, FailPct: 10},
	{Name: "e2e503-1k", Title: "(3) end to end, 10% 503, paced 1k/s", Kind: "e2e", N: 5000, QuickN: 500, Rate: 1000, FailPct: 10},
	{Name: "backlog-10k", Title: "(4) backlog of 10k, delivery down, then drain", Kind: "backlog", N: 10000, QuickN: 1000},
	{Name: "backlog-100k", Title: "(4) backlog of 100k, delivery down, then drain", Kind: "backlog", N: 100000, QuickN: 2000},
	{Name: "backlog-100k-types", Title: "(4) backlog of 100k over 100 event types, delivery down, then drain", Kind: "backlog", N: 100000, QuickN: 2000, Types: 100},
	{Name: "backlog-1m", Title: "(4) backlog of 1M, delivery down, then drain", Kind: "backlog", N: 1000000, QuickN: 5000, Big: true, MinTimeout: 45 * time.Minute},
	{Name: "amqp-fast", Title: "(5) end to end to RabbitMQ, as fast as possible", Kind: "e2e", Sink: "amqp", N: 20000, QuickN: 500},
	{Name: "amqp-1k", Title: "(5) end to end to RabbitMQ, paced 1k/s", Kind: "e2e", Sink: "amqp", N: 5000, QuickN: 300, Rate: 1000},
	{Name: "kafka-fast", Title: "(5) end to end to Kafka (kfake), as fast as possible", Kind: "e2e", Sink: "kafka", N: 20000, QuickN: 500},
	{Name: "kafka-1k", Title: "(5) end to end to Kafka (kfake), paced 1k/s", Kind: "e2e", Sink: "kafka", N: 5000, QuickN: 300, Rate: 1000},
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

// options are the parent's settings, passed on to every child.
type options struct {
	quick       bool
	jsonOut     bool
	jsonFile    string
	concurrency int
	timeout     time.Duration
	timeoutSet  bool
	runs        int
	amqpURL     string
	kafkaAddr   string
	profileDir  string
	// courierOutbox: extra outbox settings for Courier, "key: value, ...".
	courierOutbox string
	// courierEventLog: Courier keeps its event log (the default).
	courierEventLog bool
}

func main() {
	var (
		o           options
		only        = flag.String("only", "", "comma-separated scenario names to run (default: all but the big ones)")
		big         = flag.Bool("big", false, "also run the big scenarios (backlog-1m: several minutes per system)")
		runOneSys   = flag.String("run-one", "", "internal: run one system (courier|watermill) in this process and print its result as JSON")
		scenarioArg = flag.String("scenario", "", "internal, with -run-one: the scenario name")
		nArg        = flag.Int("n", 0, "internal, with -run-one: number of events")
		runArg      = flag.Int("run", 0, "internal, with -run-one: which repetition")
		kafkaBroker = flag.Bool("kafka-broker", false, "internal: serve an in-process Kafka (kfake) until standard input closes")
	)
	flag.BoolVar(&o.quick, "quick", false, "smoke run: small N, checks only that every run completes with 0 lost")
	flag.BoolVar(&o.jsonOut, "json", false, "print the results as JSON instead of a table")
	flag.StringVar(&o.jsonFile, "json-out", "", "also write the results as JSON to this file")
	flag.IntVar(&o.concurrency, "concurrency", 64, "deliveries in flight, for both systems")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "limit for one run of one system (backlog-1m: 45m unless given)")
	flag.IntVar(&o.runs, "runs", 1, "runs of each system per scenario; above 1 the table shows the median and min-max")
	flag.StringVar(&o.amqpURL, "amqp", defaultAMQPURL(), "RabbitMQ for scenario (5) (default: $COURIER_TEST_AMQP_URL or the local broker)")
	flag.StringVar(&o.kafkaAddr, "kafka", "", "Kafka broker host:port for scenario (5) (default: start kfake in a process of its own)")
	flag.StringVar(&o.profileDir, "profile", "", "write a CPU profile of each run's measured window into this directory")
	flag.BoolVar(&o.courierEventLog, "courier-event-log", true, "run Courier with its event log (SQLite in data_dir), as by default; false for a pure pipeline")
	flag.StringVar(&o.courierOutbox, "courier-outbox", "", `extra outbox settings for Courier, as "key: value, ..." (e.g. "duplicate_window: 10s, attempt_log_max_bytes: 8MiB")`)
	flag.Parse()
	flag.Visit(func(f *flag.Flag) { o.timeoutSet = o.timeoutSet || f.Name == "timeout" })
	if *kafkaBroker {
		os.Exit(serveKafka())
	}
	if o.profileDir != "" {
		abs, err := filepath.Abs(o.profileDir)
		if err == nil {
			err = os.MkdirAll(abs, 0o755)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "compare: -profile: %v\n", err)
			os.Exit(2)
		}
		o.profileDir = abs
	}
	if *runOneSys != "" {
		os.Exit(child(*runOneSys, *scenarioArg, *nArg, *runArg, o))
	}
	if o.runs < 1 {
		fmt.Fprintln(os.Stderr, "compare: -runs must be at least 1")
		os.Exit(2)
	}
	var todo []scenario
	if *only == "" {
		for _, s := range scenarios {
			if !s.Big || *big {
				todo = append(todo, s)
			}
		}
	} else {
		for name := range strings.SplitSeq(*only, ",") {
			s, ok := findScenario(strings.TrimSpace(name))
			if !ok {
				fmt.Fprintf(os.Stderr, "compare: unknown scenario %q\n", name)
				os.Exit(2)
			}
			todo = append(todo, s)
		}
		todo = withLinearityBase(todo)
	}
	os.Exit(parent(todo, o))
}

// withLinearityBase adds backlog-100k before backlog-1m when only the
// latter was asked for: the linearity ratio needs both from one run.
func withLinearityBase(todo []scenario) []scenario {
	has := map[string]bool{}
	for _, s := range todo {
		has[s.Name] = true
	}
	if !has["backlog-1m"] || has["backlog-100k"] {
		return todo
	}
	base, _ := findScenario("backlog-100k")
	var out []scenario
	for _, s := range todo {
		if s.Name == "backlog-1m" {
			fmt.Fprintln(os.Stderr, "compare: adding backlog-100k, for the linearity ratio of backlog-1m")
			out = append(out, base)
		}
		out = append(out, s)
	}
	return out
}

func (o options) timeoutFor(s scenario) time.Duration {
	if !o.timeoutSet && !o.quick && s.MinTimeout > o.timeout {
		return s.MinTimeout
	}
	return o.timeout
}

func child(sys, name string, n, run int, o options) int {
	s, ok := findScenario(name)
	if !ok {
		fmt.Fprintf(os.Stderr, "compare: unknown scenario %q\n", name)
		return 2
	}
	if n <= 0 {
		n = s.N
	}
	res, err := runOne(params{
		System: sys, Scenario: name, Kind: s.Kind, Sink: s.sink(), Size: s.size(), Types: s.Types, N: n,
		Producers: s.Producers, Rate: s.Rate, FailPct: s.FailPct, Concurrency: o.concurrency,
		Timeout: o.timeout, AMQPURL: o.amqpURL, KafkaAddr: o.kafkaAddr, ProfileDir: o.profileDir, Run: run,
		CourierOutbox: o.courierOutbox, CourierEventLog: o.courierEventLog,
	})
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
	Machine   machine     `json:"machine"`
	Command   string      `json:"command"`
	Quick     bool        `json:"quick"`
	Runs      int         `json:"runs"`
	Started   string      `json:"started"`
	Seconds   float64     `json:"wall_seconds"`
	LoadStart string      `json:"loadavg_start"` // /proc/loadavg: the machine is shared
	LoadEnd   string      `json:"loadavg_end"`
	Results   []result    `json:"results"`
	Linearity []linearity `json:"linearity,omitempty"`
	Skipped   []string    `json:"skipped,omitempty"`
	Failures  []string    `json:"failures,omitempty"`
	todo      []scenario  // what was asked for, in order
	skipped   map[string]bool
}

type machine struct {
	Cores          int    `json:"cores"`
	CPU            string `json:"cpu"`
	OS             string `json:"os"`
	Go             string `json:"go"`
	NATSServer     string `json:"nats_server"`
	Watermill      string `json:"watermill"`
	WatermillJS    string `json:"watermill_nats"`
	WatermillAMQP  string `json:"watermill_amqp"`
	WatermillKafka string `json:"watermill_kafka"`
	Sarama         string `json:"sarama"`
	KafkaGo        string `json:"kafka_go"`
	AMQP091        string `json:"amqp091"`
	Kfake          string `json:"kfake"`
	RabbitMQ       string `json:"rabbitmq,omitempty"`
	Kafka          string `json:"kafka,omitempty"`
}

func parent(todo []scenario, o options) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "compare: %v\n", err)
		return 1
	}
	start := time.Now()
	rep := report{Machine: describeMachine(), Command: strings.Join(os.Args, " "), Quick: o.quick, Runs: o.runs,
		Started: start.UTC().Format(time.RFC3339), LoadStart: loadAvg(), todo: todo, skipped: map[string]bool{}}
	if o.quick {
		rep.Runs = 1
	}
	needs := map[string]bool{}
	for _, s := range todo {
		needs[s.sink()] = true
	}
	if needs["amqp"] {
		if v, err := probeAMQP(o.amqpURL); err != nil {
			// As Courier's own tests: a missing broker skips, except in
			// CI, where it fails.
			msg := fmt.Sprintf("scenario (5) to RabbitMQ: %v (run scripts/services.sh)", err)
			if os.Getenv("CI") != "" {
				rep.Failures = append(rep.Failures, msg)
			} else {
				rep.Skipped = append(rep.Skipped, msg)
			}
			fmt.Fprintln(os.Stderr, "compare: "+msg)
			for _, s := range todo {
				if s.sink() == "amqp" {
					rep.skipped[s.Name] = true
				}
			}
		} else {
			rep.Machine.RabbitMQ = v
		}
	}
	if needs["kafka"] {
		if o.kafkaAddr == "" {
			b, err := startKafkaBroker(exe)
			if err != nil {
				rep.Failures = append(rep.Failures, fmt.Sprintf("scenario (5) to Kafka: %v", err))
				for _, s := range todo {
					if s.sink() == "kafka" {
						rep.skipped[s.Name] = true
					}
				}
			} else {
				defer b.stop()
				o.kafkaAddr = b.addr
				rep.Machine.Kafka = "kfake " + rep.Machine.Kfake + " in a process of its own, in memory"
			}
		} else {
			rep.Machine.Kafka = o.kafkaAddr
		}
	}
	for k, s := range todo {
		if rep.skipped[s.Name] {
			continue
		}
		n := s.N
		if o.quick {
			n = s.QuickN
		}
		for run := range rep.Runs {
			// Alternate which system goes first, so neither always runs on
			// a machine warmed (page cache, CPU frequency) by the other.
			order := systems
			if (k+run)%2 == 1 {
				order = []string{systems[1], systems[0]}
			}
			for _, sys := range order {
				label := ""
				if rep.Runs > 1 {
					label = fmt.Sprintf(" run %d/%d", run+1, rep.Runs)
				}
				fmt.Fprintf(os.Stderr, "compare: %-12s %-9s n=%d%s ... ", s.Name, sys, n, label)
				res, err := runChild(exe, sys, s, n, run, o)
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
	}
	rep.Linearity = linearities(rep)
	rep.Seconds = time.Since(start).Seconds()
	rep.LoadEnd = loadAvg()
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		fmt.Fprintf(os.Stderr, "compare: encode results: %v\n", err)
		return 1
	}
	if o.jsonFile != "" {
		if err := os.WriteFile(o.jsonFile, append(js, '\n'), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "compare: %v\n", err)
			return 1
		}
	}
	if o.jsonOut {
		fmt.Println(string(js))
	} else {
		printTable(os.Stdout, rep)
	}
	if len(rep.Failures) > 0 {
		for _, f := range rep.Failures {
			fmt.Fprintln(os.Stderr, "compare: FAIL:", f)
		}
		return 1
	}
	return 0
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// runChild runs one system in one scenario in a child process and adds
// the child's peak RSS, which only the parent can read.
func runChild(exe, sys string, s scenario, n, run int, o options) (result, error) {
	args := []string{"-run-one", sys, "-scenario", s.Name, "-n", strconv.Itoa(n), "-run", strconv.Itoa(run),
		"-concurrency", strconv.Itoa(o.concurrency), "-timeout", o.timeoutFor(s).String()}
	switch s.sink() {
	case "amqp":
		args = append(args, "-amqp", o.amqpURL)
	case "kafka":
		args = append(args, "-kafka", o.kafkaAddr)
	}
	if o.courierOutbox != "" {
		args = append(args, "-courier-outbox", o.courierOutbox)
	}
	args = append(args, "-courier-event-log="+strconv.FormatBool(o.courierEventLog))
	if o.profileDir != "" {
		args = append(args, "-profile", o.profileDir)
	}
	cmd := exec.Command(exe, args...)
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
			case "github.com/ThreeDotsLabs/watermill-amqp/v3":
				m.WatermillAMQP = d.Version
			case "github.com/ThreeDotsLabs/watermill-kafka/v3":
				m.WatermillKafka = d.Version
			case "github.com/IBM/sarama":
				m.Sarama = d.Version
			case "github.com/segmentio/kafka-go":
				m.KafkaGo = d.Version
			case "github.com/rabbitmq/amqp091-go":
				m.AMQP091 = d.Version
			case "github.com/twmb/franz-go/pkg/kfake":
				m.Kfake = d.Version
			}
		}
	}
	return m
}

// resultsOf returns every run of one system in one scenario.
func resultsOf(rep report, scenario, sys string) []result {
	var out []result
	for _, r := range rep.Results {
		if r.Scenario == scenario && r.System == sys {
			out = append(out, r)
		}
	}
	return out
}

// stats is one metric over the runs of one system.
type stats struct{ med, lo, hi float64 }

func summarize(rs []result, get func(result) float64) stats {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = get(r)
	}
	slices.Sort(v)
	st := stats{lo: v[0], hi: v[len(v)-1]}
	if m := len(v) / 2; len(v)%2 == 1 {
		st.med = v[m]
	} else {
		st.med = (v[m-1] + v[m]) / 2
	}
	return st
}

// linearity compares the drain of backlogs of different sizes for one
// system, per event: 1.0 is perfectly linear, above 1 each event of the
// larger backlog costs more. With the full sizes, Drain1M is
// drain(1M) / (10 x drain(100k)), the target being at most 1.10.
type linearity struct {
	System string `json:"system"`
	// Drain1M is (drain(1M) / 1M) / (drain(100k) / 100k), from the medians
	// (with the sizes actually run, in --quick smaller ones).
	Drain1M float64 `json:"drain_1m_over_10x_100k,omitempty"`
	// CPU1M is the same ratio of CPU seconds.
	CPU1M float64 `json:"cpu_1m_over_10x_100k,omitempty"`
	// Drain100k is the same ratio of backlog-100k to backlog-10k.
	Drain100k float64 `json:"drain_100k_over_10x_10k,omitempty"`
}

func linearities(rep report) []linearity {
	var out []linearity
	for _, sys := range systems {
		// perEvent is the median of a metric divided by the events.
		perEvent := func(name string, get func(result) float64) float64 {
			rs := resultsOf(rep, name, sys)
			if len(rs) == 0 {
				return 0
			}
			return summarize(rs, get).med / float64(rs[0].N)
		}
		secs := func(r result) float64 { return r.Seconds }
		cpu := func(r result) float64 { return r.CPUSeconds }
		l := linearity{System: sys}
		if a, b := perEvent("backlog-1m", secs), perEvent("backlog-100k", secs); a > 0 && b > 0 {
			l.Drain1M = a / b
			l.CPU1M = perEvent("backlog-1m", cpu) / perEvent("backlog-100k", cpu)
		}
		if a, b := perEvent("backlog-100k", secs), perEvent("backlog-10k", secs); a > 0 && b > 0 {
			l.Drain100k = a / b
		}
		if l.Drain1M > 0 || l.Drain100k > 0 {
			out = append(out, l)
		}
	}
	return out
}

// displayName is how the table names a system.
func displayName(sys string) string {
	if sys == "" {
		return ""
	}
	return strings.ToUpper(sys[:1]) + sys[1:]
}

// row is one line of the table: a metric of one scenario for both systems.
type row struct {
	metric string
	get    func(result) float64
	format string
}

func printTable(w io.Writer, rep report) {
	m := rep.Machine
	fmt.Fprintf(w, "machine: %d cores (%s), %s, %s; load average %s at the start, %s at the end (a shared machine)\n",
		m.Cores, m.CPU, m.OS, m.Go, rep.LoadStart, rep.LoadEnd)
	fmt.Fprintf(w, "nats-server %s; watermill %s, watermill-nats %s", m.NATSServer, m.Watermill, m.WatermillJS)
	if m.RabbitMQ != "" {
		fmt.Fprintf(w, "; %s (Courier: amqp091-go %s; watermill-amqp %s)", m.RabbitMQ, m.AMQP091, m.WatermillAMQP)
	}
	if m.Kafka != "" {
		fmt.Fprintf(w, "; Kafka: %s (Courier: kafka-go %s; watermill-kafka %s, sarama %s)", m.Kafka, m.KafkaGo, m.WatermillKafka, m.Sarama)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "both: 256 B events unless the scenario says 4 KiB, JetStream file storage with fsync before every ack, receiver in the same process; ratio = Courier / Watermill\n")
	if rep.Runs > 1 {
		fmt.Fprintf(w, "%d runs of each system per scenario: median (min-max); the ratio is of the medians\n", rep.Runs)
	}
	if rep.Quick {
		fmt.Fprintln(w, "QUICK run: small N, a smoke test; the figures mean little")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| scenario\t| metric\t| Courier\t| Watermill\t| ratio\t|")
	fmt.Fprintln(tw, "| ---\t| ---\t| ---\t| ---\t| ---\t|")
	for _, s := range rep.todo {
		if rep.skipped[s.Name] {
			fmt.Fprintf(tw, "| %s\t| SKIPPED\t| \t| \t| \t|\n", s.Title)
			continue
		}
		by := map[string][]result{}
		n := s.N
		for _, sys := range systems {
			by[sys] = resultsOf(rep, s.Name, sys)
			if len(by[sys]) > 0 {
				n = by[sys][0].N
			}
		}
		for j, rw := range rowsFor(s) {
			cells := make([]string, 2)
			meds := make([]float64, 2)
			for k, sys := range systems {
				cells[k] = "FAILED"
				if rs := by[sys]; len(rs) > 0 {
					st := summarize(rs, rw.get)
					meds[k] = st.med
					cells[k] = fmt.Sprintf(rw.format, st.med)
					if len(rs) > 1 {
						cells[k] += fmt.Sprintf(" ("+rw.format+"-"+rw.format+")", st.lo, st.hi)
					}
					if len(rs) < rep.Runs {
						cells[k] += fmt.Sprintf(" [%d of %d runs]", len(rs), rep.Runs)
					}
				}
			}
			ratio := ""
			if len(by["courier"]) > 0 && len(by["watermill"]) > 0 && meds[1] != 0 {
				ratio = fmt.Sprintf("%.2f", meds[0]/meds[1])
			}
			title := ""
			if j == 0 {
				title = fmt.Sprintf("%s, n=%d", s.Title, n)
			}
			fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s\t| %s\t|\n", title, rw.metric, cells[0], cells[1], ratio)
		}
	}
	_ = tw.Flush()
	if len(rep.Linearity) > 0 {
		fmt.Fprintln(w, "\nbacklog linearity, drain time per event of the larger backlog / of the smaller (1.00 = linear;")
		fmt.Fprintln(w, "target: drain(1M) within 10% of 10 x drain(100k), i.e. at most 1.10):")
		for _, l := range rep.Linearity {
			var parts []string
			if l.Drain1M > 0 {
				parts = append(parts, fmt.Sprintf("drain(1M) / (10 x drain(100k)) = %.2f, CPU %.2f", l.Drain1M, l.CPU1M))
			}
			if l.Drain100k > 0 {
				parts = append(parts, fmt.Sprintf("drain(100k) / (10 x drain(10k)) = %.2f", l.Drain100k))
			}
			fmt.Fprintf(w, "  %-10s %s\n", displayName(l.System)+":", strings.Join(parts, "; "))
		}
	}
	if len(rep.Skipped) > 0 {
		fmt.Fprintln(w, "\nskipped:")
		for _, f := range rep.Skipped {
			fmt.Fprintln(w, "  "+f)
		}
	}
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
			row{"time to first receipt s", func(r result) float64 { return r.FirstSeconds }, "%.2f"},
			row{"time to drain s (lower is better)", func(r result) float64 { return r.Seconds }, "%.2f"},
			row{"then, event log caught up s", func(r result) float64 { return r.LogSeconds }, "%.2f"},
			row{"then, event log CPU s per 100k events", func(r result) float64 { return r.LogCPUSeconds * 100000 / float64(max(r.N, 1)) }, "%.2f"},
			row{"drain events/s", func(r result) float64 { return r.EventsPerSec }, "%.0f"})
	}
	return append(rows,
		row{"lost (must be 0)", func(r result) float64 { return float64(r.Lost) }, "%.0f"},
		row{"duplicates", func(r result) float64 { return float64(r.Duplicates) }, "%.0f"},
		row{"(6) CPU s per 100k events", func(r result) float64 { return r.CPUPer100k }, "%.2f"},
		row{"(6) peak RSS MiB", func(r result) float64 { return r.MaxRSSMiB }, "%.0f"})
}

package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/sinks/kafka"
)

// The Kafka broker of the restart scenario runs in a process of its own, so
// that it can be SIGKILLed like a real one: the test binary, started with
// COURIER_TEST_BE_KAFKA=port,topic,file, becomes a kfake broker.
const kafkaBrokerEnv = "COURIER_TEST_BE_KAFKA"

// runKafkaBroker serves the Kafka wire protocol with kfake on a fixed port,
// so that a restarted broker is found where the last one was, and appends
// the courier-event-id of every record it is asked to store to file (a
// line each), since kfake keeps its log in memory and a SIGKILL takes it
// away. A record is written to the file before the broker handles the
// produce request, so the file holds what reached the broker intact; the
// sink counts an event sent only once the broker's answer came back.
func runKafkaBroker(spec string) {
	parts := strings.SplitN(spec, ",", 3)
	if len(parts) != 3 {
		fmt.Fprintf(os.Stderr, "%s=%q: want port,topic,file\n", kafkaBrokerEnv, spec)
		os.Exit(2)
	}
	port, err := strconv.Atoi(parts[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: port %q: %v\n", kafkaBrokerEnv, parts[0], err)
		os.Exit(2)
	}
	out, err := os.OpenFile(parts[2], os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.SeedTopics(1, parts[1]))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kfake:", err)
		os.Exit(1)
	}
	var mu sync.Mutex // produce requests are handled one at a time, but be sure
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		var ids strings.Builder
		for _, tp := range req.(*kmsg.ProduceRequest).Topics {
			for _, p := range tp.Partitions {
				for _, id := range producedIDs(p.Records) {
					ids.WriteString(id + "\n")
				}
			}
		}
		if _, err := out.WriteString(ids.String()); err != nil {
			fmt.Fprintln(os.Stderr, "record ids:", err)
			os.Exit(1)
		}
		return nil, nil, false // kfake stores and answers as usual
	})
	fmt.Println("listening", c.ListenAddrs()[0])
	select {} // until killed
}

// producedIDs reads the event ids out of the record batches of one
// partition of a produce request. A batch that does not parse yields
// nothing: kfake refuses it, and the sink sends it again.
func producedIDs(raw []byte) []string {
	var ids []string
	for len(raw) >= 12 {
		var b kmsg.RecordBatch
		if err := b.ReadFrom(raw); err != nil || int(b.Length)+12 > len(raw) {
			return ids
		}
		records, err := kgo.DefaultDecompressor().Decompress(b.Records, kgo.CompressionCodecType(b.Attributes&0x0007))
		if err != nil {
			return ids
		}
		for range b.NumRecords {
			rec := kmsg.NewRecord()
			if err := rec.ReadFrom(records); err != nil {
				return ids
			}
			for _, h := range rec.Headers {
				if h.Key == kafka.HeaderEventID {
					ids = append(ids, string(h.Value))
				}
			}
			length, n := binary.Varint(records)
			if n <= 0 || int(length)+n > len(records) {
				return ids
			}
			records = records[int(length)+n:]
		}
		raw = raw[int(b.Length)+12:]
	}
	return ids
}

// kafkaBroker is the broker process, restartable on its port.
type kafkaBroker struct {
	t                 *testing.T
	port              int
	topic, ids, logTo string
	cmd               *exec.Cmd
	starts            int
}

func (k *kafkaBroker) start() {
	k.t.Helper()
	log, err := os.OpenFile(k.logTo, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		k.t.Fatal(err)
	}
	defer log.Close()
	k.cmd = exec.Command(os.Args[0])
	k.cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%s,%s", kafkaBrokerEnv, k.port, k.topic, k.ids))
	k.cmd.Stdout, k.cmd.Stderr = log, log
	if err := k.cmd.Start(); err != nil {
		k.t.Fatalf("start the Kafka broker: %v", err)
	}
	k.starts++
	testutil.Eventually(k.t, 30*time.Second, func() bool {
		b, _ := os.ReadFile(k.logTo)
		return strings.Count(string(b), "listening") == k.starts
	}, "the Kafka broker listening on 127.0.0.1:%d (log %s)", k.port, k.logTo)
}

func (k *kafkaBroker) kill() {
	k.t.Helper()
	_ = k.cmd.Process.Signal(syscall.SIGKILL)
	_ = k.cmd.Wait()
}

// received counts the ids the broker processes were asked to store: how
// many distinct ids with prefix, and how many copies beyond the first.
func (k *kafkaBroker) received(prefix string) (delivered, duplicates int) {
	f, err := os.Open(k.ids)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id := sc.Text()
		if !strings.HasPrefix(id, prefix) {
			continue
		}
		if seen[id] {
			duplicates++
			continue
		}
		seen[id] = true
		delivered++
	}
	return delivered, duplicates
}

// TestChaosKafkaBrokerRestarts: the Kafka broker (kfake, in a process of
// its own) is SIGKILLed and started again on its port three times while a
// steady load is delivered to a Kafka sink. Every event reaches a broker;
// the sink reconnects by itself. make chaos restarts it 10 times
// (COURIER_CHAOS_RESTARTS).
func TestChaosKafkaBrokerRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos scenario skipped with -short")
	}
	restarts := chaosInt(t, "COURIER_CHAOS_RESTARTS", 3)
	dir := t.TempDir()
	broker := &kafkaBroker{t: t, port: freePort(t), topic: "chaos-events",
		ids: filepath.Join(dir, "received-ids"), logTo: filepath.Join(dir, "broker.log")}
	broker.start()
	t.Cleanup(broker.kill)

	port := freePort(t)
	cfg := filepath.Join(dir, "courier.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`node_id: kafka-node
data_dir: %s
log: {level: info, format: json}
admin: {listen: "127.0.0.1:0"}
outbox: {listen: "127.0.0.1:%d"}
sinks:
  - name: stream
    type: kafka
    brokers: ["127.0.0.1:%d"]
    topic: chaos-events
    timeout: 2s
    retry: {initial: 50ms, max_interval: 1s}
`, filepath.Join(dir, "data"), port, broker.port)), 0o600); err != nil {
		t.Fatal(err)
	}
	startWorkerProc(t, cfg)
	pub := waitReady(t, fmt.Sprintf("nats://127.0.0.1:%d", port))
	defer pub.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	emitted := make(chan int, 1)
	loadDone := make(chan struct{})
	go func() { // 100 events a second, for as long as the restarts take
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		n := 0
		for {
			select {
			case <-loadDone:
				emitted <- n
				return
			case <-tick.C:
			}
			if _, err := pub.Emit(ctx, event.Envelope{ID: fmt.Sprintf("kafka-%06d", n), Type: "VM.CREATE", Key: fmt.Sprintf("vm-%d", n%8)}); err != nil {
				t.Errorf("emit %d: %v", n, err)
				emitted <- n
				return
			}
			n++
		}
	}()
	for range restarts {
		time.Sleep(2 * time.Second) // the load's shape: deliveries between outages
		broker.kill()
		time.Sleep(3 * time.Second) // the broker stays down this long
		broker.start()
	}
	time.Sleep(2 * time.Second)
	close(loadDone)
	total := <-emitted
	upAt := time.Now()
	testutil.Eventually(t, 3*time.Minute, func() bool { d, _ := broker.received("kafka-"); return d == total },
		"all %d events at the broker after %d restarts", total, restarts)
	// The sink owes nothing: no event it still counts as pending or in
	// flight, none dead-lettered.
	testutil.Eventually(t, time.Minute, func() bool {
		r := cli(t, "status", "--config", cfg, "--json")
		return r.err == nil && strings.Contains(r.stdout, `"sink":"stream","state":"enabled","pending":0,"in_flight":0,"dead_letters":0`)
	}, "the Kafka sink's backlog empty, nothing dead-lettered")
	delivered, dups := broker.received("kafka-")
	t.Logf("chaos kafka-broker-restarts: 100 events/s to Kafka, the broker SIGKILLed and restarted %d times (down 3 s each); emitted %d, delivered %d, lost %d, duplicates %d; all at the broker %s after the last restart",
		restarts, total, delivered, total-delivered, dups, time.Since(upAt).Round(time.Millisecond))
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
)

// privateRabbit starts a RabbitMQ node of the test's own (Debian's
// rabbitmq-server, with its own node name, ports and directories), so that
// stopping it disturbs no other test, and returns its AMQP URL and node
// name. It is shut down at the end of the test.
func privateRabbit(t *testing.T) (url, node string) {
	t.Helper()
	server, err := exec.LookPath("rabbitmq-server")
	if err != nil {
		testutil.Require(t, fmt.Errorf("the broker-restart scenario runs a RabbitMQ node of its own: %w", err))
	}
	// Not t.TempDir: the server runs as the rabbitmq user, which must
	// reach it.
	dir, err := os.MkdirTemp("", "courier-rabbit-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	port, dist := freePort(t), freePort(t)
	node = fmt.Sprintf("courier-chaos-%d@localhost", os.Getpid())
	conf := filepath.Join(dir, "rabbitmq.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\n", port)), 0o644); err != nil {
		t.Fatal(err)
	}
	if u, err := user.Lookup("rabbitmq"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		_ = filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, uid, gid) })
	}
	log, err := os.Create(filepath.Join(dir, "server.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(server)
	cmd.Env = append(os.Environ(),
		"RABBITMQ_NODENAME="+node, "RABBITMQ_CONFIG_FILE="+conf, "RABBITMQ_DIST_PORT="+strconv.Itoa(dist),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"), "RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "plugins"),
		"RABBITMQ_FEATURE_FLAGS_FILE="+filepath.Join(dir, "feature_flags"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start rabbitmq-server: %v", err)
	}
	t.Cleanup(func() {
		_ = exec.Command("rabbitmqctl", "-n", node, "shutdown").Run()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	url = fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port)
	testutil.Eventually(t, 2*time.Minute, func() bool {
		c, err := amqp.Dial(url)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, "a RabbitMQ node of the test's own at %s (log %s)", url, log.Name())
	return url, node
}

func rabbitctl(t *testing.T, node string, args ...string) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", append([]string{"-n", node}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// amqpCounter consumes a durable queue with manual acks, reconnecting when
// the broker goes away, and counts each message id.
type amqpCounter struct {
	mu         sync.Mutex
	seen       map[string]int
	delivered  int
	duplicates int
	reconnects int
}

func (c *amqpCounter) run(ctx context.Context, url, queue string) {
	for ctx.Err() == nil {
		conn, err := amqp.Dial(url)
		if err != nil {
			time.Sleep(200 * time.Millisecond) // the broker is restarting: dial again
			continue
		}
		ch, err := conn.Channel()
		if err == nil {
			var msgs <-chan amqp.Delivery
			if msgs, err = ch.Consume(queue, "", false, false, false, false, nil); err == nil {
				for m := range msgs {
					c.mu.Lock()
					c.seen[m.MessageId]++
					if strings.HasPrefix(m.MessageId, "broker-") {
						if c.seen[m.MessageId] == 1 {
							c.delivered++
						} else {
							c.duplicates++
						}
					}
					c.mu.Unlock()
					_ = m.Ack(false)
				}
			}
		}
		conn.Close()
		c.mu.Lock()
		c.reconnects++
		c.mu.Unlock()
	}
}

func (c *amqpCounter) counts() (delivered, duplicates int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.delivered, c.duplicates
}

// TestChaosBrokerRestarts: RabbitMQ is stopped and started
// (rabbitmqctl stop_app / start_app) three times while a steady load is
// delivered to an AMQP sink. The sink reconnects by itself and every event
// reaches the queue. make chaos restarts it 10 times
// (COURIER_CHAOS_RESTARTS); make test 3.
func TestChaosBrokerRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos scenario skipped with -short")
	}
	restarts := chaosInt(t, "COURIER_CHAOS_RESTARTS", 3)
	url, node := privateRabbit(t)

	// The queue is there before the first event, so nothing is unroutable.
	setup, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := setup.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare("chaos-events", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("chaos-audit", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("chaos-audit", "#", "chaos-events", false, nil); err != nil {
		t.Fatal(err)
	}
	setup.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	counter := &amqpCounter{seen: map[string]int{}}
	go counter.run(ctx, url, "chaos-audit")

	dir := t.TempDir()
	port := freePort(t)
	cfg := filepath.Join(dir, "courier.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`node_id: broker-node
data_dir: %s
log: {level: info, format: json}
admin: {listen: "127.0.0.1:0"}
outbox: {listen: "127.0.0.1:%d"}
sinks:
  - name: bus
    type: amqp
    url: %s
    exchange: chaos-events
    declare: true
    routing_key: "{type}"
    timeout: 2s
    retry: {initial: 50ms, max_interval: 1s}
`, filepath.Join(dir, "data"), port, url)), 0o600); err != nil {
		t.Fatal(err)
	}
	startWorkerProc(t, cfg)
	pub := waitReady(t, fmt.Sprintf("nats://127.0.0.1:%d", port))
	defer pub.Close()

	// 100 events a second, for as long as the restarts take.
	emitted := make(chan int, 1)
	loadDone := make(chan struct{})
	go func() {
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
			if _, err := pub.Emit(ctx, event.Envelope{ID: fmt.Sprintf("broker-%06d", n), Type: "VM.CREATE"}); err != nil {
				t.Errorf("emit %d: %v", n, err)
				emitted <- n
				return
			}
			n++
		}
	}()
	var downFor []time.Duration
	for range restarts {
		time.Sleep(2 * time.Second) // the load's shape: deliveries between outages
		stopped := time.Now()
		rabbitctl(t, node, "stop_app")
		time.Sleep(3 * time.Second) // the broker stays down this long
		rabbitctl(t, node, "start_app")
		downFor = append(downFor, time.Since(stopped))
	}
	time.Sleep(2 * time.Second)
	close(loadDone)
	total := <-emitted
	upAt := time.Now()
	testutil.Eventually(t, 3*time.Minute, func() bool { d, _ := counter.counts(); return d == total },
		"all %d events in the queue after %d broker restarts", total, restarts)
	delivered, dups := counter.counts()
	counter.mu.Lock()
	reconnects := counter.reconnects
	counter.mu.Unlock()
	t.Logf("chaos broker-restarts: 100 events/s to AMQP, RabbitMQ stopped and started %d times (down %v each); emitted %d, delivered %d, lost %d, duplicates %d; the test's consumer reconnected %d times, the sink by itself; all in the queue %s after the last restart",
		restarts, roundAll(downFor), total, delivered, total-delivered, dups, reconnects, time.Since(upAt).Round(time.Millisecond))
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Millisecond)
	}
	return out
}

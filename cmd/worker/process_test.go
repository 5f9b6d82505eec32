package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
)

// The test binary doubles as the worker binary, so process tests run the
// real main without a separate build step, and as the Kafka broker the
// broker-restart scenario kills.
func TestMain(m *testing.M) {
	if os.Getenv("COURIER_TEST_BE_WORKER") == "1" {
		main()
		return
	}
	if spec := os.Getenv(kafkaBrokerEnv); spec != "" {
		runKafkaBroker(spec)
		return
	}
	os.Exit(m.Run())
}

// workerProc is the worker running as a child process.
type workerProc struct {
	t      *testing.T
	cfg    string
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	stdout *bytes.Buffer
}

func startWorkerProc(t *testing.T, cfg string) *workerProc {
	t.Helper()
	return startWorkerProcEnv(t, cfg)
}

// startWorkerProcEnv starts the worker with env (NAME=value) added to the
// test's environment; read stdout and stderr once it has exited.
func startWorkerProcEnv(t *testing.T, cfg string, env ...string) *workerProc {
	t.Helper()
	p := &workerProc{t: t, cfg: cfg, stderr: &bytes.Buffer{}, stdout: &bytes.Buffer{}}
	p.cmd = exec.Command(os.Args[0], "run", "--config", cfg)
	p.cmd.Env = append(append(os.Environ(), "COURIER_TEST_BE_WORKER=1"), env...)
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("worker log:\n%s", p.stderr.String())
		}
	})
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(testutil.FreeAddr(t))
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writeConfig(t *testing.T, dir string, port int, receiverURL string) string {
	t.Helper()
	path := filepath.Join(dir, "courier.yaml")
	cfg := fmt.Sprintf(`node_id: crash-node
data_dir: %s
log: {level: info, format: json}
admin: {listen: "127.0.0.1:0"}
shutdown_timeout: 5s
outbox: {listen: "127.0.0.1:%d"}
webhook_allow: [127.0.0.1/32]
sinks:
  - name: audit
    type: webhook
    url: %s
    timeout: 1s
    concurrency: 64
    retry: {initial: 50ms, max_interval: 500ms}
`, filepath.Join(dir, "data"), port, receiverURL)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func waitReady(t *testing.T, url string) *outbox.Publisher {
	t.Helper()
	var p *outbox.Publisher
	testutil.Eventually(t, 30*time.Second, func() bool {
		var err error
		p, err = outbox.Dial(context.Background(), url, time.Second, outbox.WithAckTimeout(5*time.Second))
		if err != nil {
			return false
		}
		// Ready means the outbox stream exists and acknowledges.
		if _, err = p.Emit(context.Background(), event.Envelope{Type: "READY_PROBE"}); err != nil {
			p.Close()
			return false
		}
		return true
	}, "worker accepts events at %s", url)
	return p
}

// TestCrashWithEventsInFlightLosesNothing kills the worker with SIGKILL
// while thousands of events are being emitted and delivered, restarts it,
// and checks that every acknowledged event reached the receiver.
func TestCrashWithEventsInFlightLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("process crash test skipped with -short")
	}
	rcv := testutil.NewReceiver(t)
	dir := t.TempDir()
	port := freePort(t)
	cfg := writeConfig(t, dir, port, rcv.URL())
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)

	proc := startWorkerProc(t, cfg)
	pub := waitReady(t, url)
	defer pub.Close()

	const total = 20000
	ids := make([]string, total)
	pending := make([]*outbox.Pending, total)
	var emitted sync.WaitGroup
	emitted.Add(1)
	go func() {
		defer emitted.Done()
		for i := range total {
			ids[i] = fmt.Sprintf("crash-%05d", i)
			pe, err := pub.EmitAsync(context.Background(), event.Envelope{ID: ids[i], Type: "VOLUME_CREATE", Data: []byte(`{"i":` + fmt.Sprint(i) + `}`)})
			if err != nil {
				t.Errorf("emit %d: %v", i, err)
				return
			}
			pending[i] = pe
		}
	}()

	// Kill while deliveries are under way: some delivered, many not.
	testutil.Eventually(t, 60*time.Second, func() bool { return rcv.Distinct() >= 3000 }, "3000 events delivered before the crash")
	if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = proc.cmd.Wait()
	deliveredAtCrash := rcv.Distinct()
	emitted.Wait()

	// Producers whose emit was not acknowledged emit again with the same
	// id, as the emit contract tells them to.
	var unacked []int
	for i, pe := range pending {
		if pe == nil {
			t.Fatalf("event %d was never queued", i)
		}
		<-pe.Done()
		if pe.Err() != nil {
			unacked = append(unacked, i)
		}
	}
	t.Logf("at the crash: %d of %d events delivered, %d emits unacknowledged", deliveredAtCrash, total, len(unacked))

	proc2 := startWorkerProc(t, cfg)
	pub2 := waitReady(t, url)
	defer pub2.Close()
	for _, i := range unacked {
		if _, err := pub2.Emit(context.Background(), event.Envelope{ID: ids[i], Type: "VOLUME_CREATE"}); err != nil {
			t.Fatalf("re-emit %s: %v", ids[i], err)
		}
	}

	missing := func() int {
		n := 0
		for _, id := range ids {
			if rcv.Seen(id) == 0 {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(90 * time.Second)
	for m := missing(); m > 0; m = missing() {
		if time.Now().After(deadline) {
			var lost []string
			for _, id := range ids {
				if rcv.Seen(id) == 0 && len(lost) < 20 {
					lost = append(lost, id)
				}
			}
			t.Fatalf("%d of %d events never delivered after the restart (%v); outbox: %s", m, total, lost, outboxState(url))
		}
		time.Sleep(20 * time.Millisecond)
	}

	dups := 0
	for _, id := range ids {
		dups += rcv.Seen(id) - 1
	}
	t.Logf("0 lost of %d; %d duplicate deliveries (events in flight at the crash)", total, dups)

	// A clean stop: SIGTERM ends the worker with status 0.
	if err := proc2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := proc2.cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("worker exited with %v after SIGTERM", ee)
		}
		t.Fatal(err)
	}
}

// outboxState describes the outbox stream and consumers, for failures.
func outboxState(url string) string {
	nc, err := nats.Connect(url)
	if err != nil {
		return err.Error()
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	s, err := js.Stream(ctx, outbox.StreamEvents)
	if err != nil {
		return err.Error()
	}
	out := fmt.Sprintf("stream %+v", s.CachedInfo().State)
	for info := range s.ListConsumers(ctx).Info() {
		out += fmt.Sprintf("; consumer %s: delivered %+v ack floor %+v pending %d ack-pending %d redelivered %d waiting %d",
			info.Name, info.Delivered, info.AckFloor, info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting)
	}
	return out
}

// TestSecondWorkerOnOneDataDirIsRefused starts a worker, then a second one
// on the same data_dir with another outbox port: the second must refuse
// with exit 2 and name the directory and the first one's pid, and nothing
// the first acknowledged may be lost. After a SIGKILL of the first, a new
// worker takes the directory at once (the kernel dropped the lock) and
// delivers every acknowledged event.
func TestSecondWorkerOnOneDataDirIsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("process test skipped with -short")
	}
	rcv := testutil.NewReceiver(t)
	dir := t.TempDir()
	port := freePort(t)
	cfg := writeConfig(t, dir, port, rcv.URL())
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)

	first := startWorkerProc(t, cfg)
	pub := waitReady(t, url)
	defer pub.Close()

	// The second worker: same data_dir, its own port and config file.
	dir2 := t.TempDir()
	cfg2 := writeConfig(t, dir2, freePort(t), rcv.URL())
	raw, err := os.ReadFile(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.Replace(raw, []byte(filepath.Join(dir2, "data")), []byte(filepath.Join(dir, "data")), 1)
	if err := os.WriteFile(cfg2, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	// Without a lock the second worker would run on: bound it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, os.Args[0], "run", "--config", cfg2)
	second.Env = append(os.Environ(), "COURIER_TEST_BE_WORKER=1")
	var stderr bytes.Buffer
	second.Stderr = &stderr
	err = second.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("second worker on the same data_dir: %v, want exit status 2; stderr:\n%s", err, stderr.String())
	}
	want := fmt.Sprintf("worker: data_dir %s is in use by process %d", filepath.Join(dir, "data"), first.cmd.Process.Pid)
	if !strings.Contains(stderr.String(), want) {
		t.Fatalf("second worker said:\n%s\nwant a line with %q", stderr.String(), want)
	}

	// The first worker still takes and delivers events, and a read-only
	// command works beside it (it connects over NATS, never to data_dir).
	const total = 500
	ids := make([]string, total)
	for i := range total {
		ids[i] = fmt.Sprintf("lock-%03d", i)
		if _, err := pub.Emit(context.Background(), event.Envelope{ID: ids[i], Type: "VOLUME_CREATE"}); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
	}
	var status bytes.Buffer
	if err := dispatch(context.Background(), []string{"status", "--config", cfg}, &status, io.Discard); err != nil {
		t.Fatalf("worker status beside a running worker: %v", err)
	}

	// SIGKILL leaves no stale lock: a new worker starts on the directory
	// at once and every acknowledged event reaches the receiver.
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()
	startWorkerProc(t, cfg)
	pub2 := waitReady(t, url)
	defer pub2.Close()
	testutil.Eventually(t, 60*time.Second, func() bool { return len(missing(rcv, ids)) == 0 },
		"all %d acknowledged events delivered after the restart: %d missing", total, len(missing(rcv, ids)))
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
)

// smallDisk mounts a tmpfs of size MiB at a new directory for the test,
// unmounted at its end: a data_dir that can really fill up.
func smallDisk(t *testing.T, mib int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.Require(t, errors.New("the disk-full scenario mounts a tmpfs and needs root"))
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%dm", mib)); err != nil {
		t.Fatalf("mount a %d MiB tmpfs: %v", mib, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes zeros into path until the filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill the disk: %v", err)
			}
			return
		}
	}
}

// TestChaosDiskFull: the outbox's data_dir is a 64 MiB filesystem.
//   - With outbox.max_bytes larger than it can hold, the worker refuses to
//     start and says what to change.
//   - Filled up while the sink is down: emitting gets a clear error in
//     bounded time (no hang, no panic), nothing already acknowledged is
//     lost, and the worker delivers what it holds once the sink is back.
//   - Space freed: JetStream keeps the failed store closed until it is
//     reopened, so the worker exits asking for a restart; started again,
//     as systemd or Kubernetes would, it takes events, and everything
//     acknowledged is delivered.
func TestChaosDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos scenario skipped with -short")
	}
	disk := smallDisk(t, 64)
	var (
		mu       sync.Mutex
		up       bool
		accepted = map[string]bool{}
	)
	rcv := testutil.NewReceiver(t)
	rcv.Answer(func(d testutil.Delivery, _ int) (int, http.Header) {
		mu.Lock()
		defer mu.Unlock()
		if !up {
			return http.StatusServiceUnavailable, nil
		}
		accepted[d.ID] = true
		return http.StatusOK, nil
	})
	port := freePort(t)
	writeCfg := func(maxBytes string) string {
		path := filepath.Join(t.TempDir(), "courier.yaml")
		if err := os.WriteFile(path, []byte(fmt.Sprintf(`node_id: disk-node
data_dir: %s
log: {level: info, format: json}
admin: {listen: "127.0.0.1:0"}
outbox: {listen: "127.0.0.1:%d", max_bytes: %s, attempt_log_max_bytes: 2MiB}
event_log: {enabled: false}
webhook_allow: [127.0.0.1/32]
sinks:
  - name: audit
    type: webhook
    url: %s
    timeout: 1s
    retry: {initial: 50ms, max_interval: 500ms}
`, filepath.Join(disk, "data"), port, maxBytes, rcv.URL())), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	tooBig := startWorkerProc(t, writeCfg("10GiB"))
	if err := tooBig.cmd.Wait(); err == nil {
		t.Fatal("the worker started with outbox.max_bytes 10GiB on a 64 MiB data_dir")
	}
	if msg := tooBig.stderr.String(); !strings.Contains(msg, "lower outbox.max_bytes") {
		t.Fatalf("the refusal does not say what to change:\n%s", msg)
	}

	cfg := writeCfg("32MiB")
	proc := startWorkerProc(t, cfg)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	pub := waitReady(t, url)
	defer pub.Close()

	// A backlog, acknowledged, while the sink is down; then the disk fills.
	ctx := context.Background()
	var acked []string
	emit := func(id string) error {
		ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := pub.Emit(ectx, event.Envelope{ID: id, Type: "VOLUME_CREATE", Data: []byte(`{"pad":"` + strings.Repeat("x", 512) + `"}`)})
		if err == nil {
			acked = append(acked, id)
		}
		return err
	}
	for i := range 2000 {
		if err := emit(fmt.Sprintf("disk-%05d", i)); err != nil {
			t.Fatalf("emit %d before the disk filled: %v", i, err)
		}
	}
	fill(t, filepath.Join(disk, "filler"))
	var fullErr error
	refusedIn := time.Duration(0)
	for i := range 200 {
		start := time.Now()
		if err := emit(fmt.Sprintf("full-%03d", i)); err != nil {
			fullErr, refusedIn = err, time.Since(start)
			break
		}
	}
	if fullErr == nil {
		t.Fatal("200 more events were acknowledged on a full disk")
	}
	if refusedIn > 8*time.Second { // the ack timeout is 5 s; a hang would run into the 10 s context
		t.Errorf("emit on a full disk took %s to fail", refusedIn)
	}

	// The worker delivers what it holds, disk still full.
	mu.Lock()
	up = true
	mu.Unlock()
	got := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, id := range acked {
			if accepted[id] {
				n++
			}
		}
		return n
	}
	testutil.Eventually(t, 2*time.Minute, func() bool { return got() == len(acked) },
		"the %d acknowledged events delivered with the disk full", len(acked))
	deliveredFull := got()

	// Space freed: the worker asks for a restart, and its supervisor (here
	// the test) starts it again.
	if err := os.Remove(filepath.Join(disk, "filler")); err != nil {
		t.Fatal(err)
	}
	freedAt := time.Now()
	exited := make(chan error, 1)
	go func() { exited <- proc.cmd.Wait() }()
	select {
	case err := <-exited:
		if err == nil || !strings.Contains(proc.stderr.String(), "failed on a full disk, and there is room again") {
			t.Fatalf("the worker exited (%v) without saying why:\n%s", err, proc.stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("the worker did not ask for a restart within a minute of space being freed")
	}
	asked := time.Since(freedAt)
	pub.Close()
	startWorkerProc(t, cfg)
	pub = waitReady(t, url)
	recovered := time.Since(freedAt)
	for i := range 500 {
		if err := emit(fmt.Sprintf("freed-%04d", i)); err != nil {
			t.Fatalf("emit %d after space was freed: %v", i, err)
		}
	}
	testutil.Eventually(t, 2*time.Minute, func() bool { return got() == len(acked) }, "all %d acknowledged events delivered", len(acked))
	t.Logf("chaos disk-full: data_dir on a 64 MiB tmpfs, filled while the sink was down; emit refused in %s with %q; %d acknowledged before, %d delivered with the disk full, lost 0; the worker asked for a restart %s after space was freed, emits acknowledged again %s after it; %d acknowledged in all, all delivered",
		refusedIn.Round(time.Millisecond), fullErr, 2000, deliveredFull, asked.Round(time.Millisecond), recovered.Round(time.Millisecond), len(acked))
}

package deploy

import (
	"crypto/sha256"
	"debug/elf"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var binaries = []string{"courier-worker", "emit"}

// TestStaticBinariesNeedNoLibraries: the image is distroless (no libc),
// so the binaries must not ask for a dynamic loader or any library.
func TestStaticBinariesNeedNoLibraries(t *testing.T) {
	for _, name := range binaries {
		f, err := elf.Open(filepath.Join(bin, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s asks for a dynamic loader", name)
			}
		}
		if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
			t.Errorf("%s needs libraries %v (%v)", name, libs, err)
		}
	}
}

// TestStaticBuildIsReproducible builds again into another directory: the
// same source gives the same bytes.
func TestStaticBuildIsReproducible(t *testing.T) {
	again := t.TempDir()
	build := exec.Command("scripts/build-static.sh", again, "0.1.0-test")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, name := range binaries {
		if a, b := fileSum(t, filepath.Join(bin, name)), fileSum(t, filepath.Join(again, name)); a != b {
			t.Errorf("%s differs between two builds of the same source: %s, %s", name, a, b)
		}
	}
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestQuickStartInAnEmptyEnvironment runs the image's binaries as the image
// would: no environment at all (no HOME, no PATH, no TZ). The worker starts
// with its embedded outbox, emit stores an event, and the webhook gets it.
func TestQuickStartInAnEmptyEnvironment(t *testing.T) {
	var got atomic.Int32
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer quickstart-token" {
			got.Add(1)
		}
	}))
	defer receiver.Close()
	dir := t.TempDir()
	outbox, admin := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`node_id: image-node
data_dir: %s/data
log: {level: info, format: json}
admin: {listen: "127.0.0.1:%d"}
outbox: {listen: "127.0.0.1:%d", sync: always}
webhook_allow: [127.0.0.1/32]
sinks:
  - name: audit
    type: webhook
    url: %s/listen
    format: gluster
    bearer_token: quickstart-token
`, dir, admin, outbox, receiver.URL)
	path := filepath.Join(dir, "courier.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "worker.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	worker := exec.Command(filepath.Join(bin, "courier-worker"), "run", "--config", path)
	worker.Env = []string{}
	worker.Stdout, worker.Stderr = logFile, logFile
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = worker.Process.Kill()
		_ = worker.Wait()
	}()
	logs := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	waitFor(t, 30*time.Second, func() bool { return strings.Contains(logs(), "admin endpoint listening") },
		"the worker to start with an empty environment", logs)
	emit := exec.Command(filepath.Join(bin, "emit"), "--url", fmt.Sprintf("nats://127.0.0.1:%d", outbox),
		"--type", "VOLUME_CREATE", "--data", `{"name":"gv1"}`)
	emit.Env = []string{}
	if out, err := emit.CombinedOutput(); err != nil {
		t.Fatalf("emit with an empty environment: %v\n%s", err, out)
	}
	waitFor(t, 30*time.Second, func() bool { return got.Load() > 0 }, "the webhook to get the event", logs)
}

// waitFor polls cond until it holds or the deadline passes, then fails
// with the worker's log.
func waitFor(t *testing.T, d time.Duration, cond func() bool, what string, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; worker log:\n%s", d, what, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

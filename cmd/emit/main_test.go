package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
)

const waitFor = 20 * time.Second

// TestMain points the default spool at an empty directory of its own, so
// no test writes to the real ~/.local/state, and fails the run if a test
// left events there: tests that spool give --spool.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "emit-test-spool-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("COURIER_SPOOL", dir)
	code := m.Run()
	if left, _ := os.ReadDir(dir); len(left) > 0 && code == 0 {
		fmt.Fprintf(os.Stderr, "a test left %d entries in the default spool %s\n", len(left), dir)
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// uuidV7 is the shape of the ids emit generates.
var uuidV7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// result is what one run of emit produced.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// emit runs the command in-process with the given arguments and stdin.
func emit(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, strings.NewReader(stdin), &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// outboxWithSink starts a bare outbox with one sink's consumer, so the
// interest-retention stream keeps what is emitted; it returns the URL and a
// JetStream handle to inspect the stream.
func outboxWithSink(t *testing.T, limits outbox.Limits) (string, jetstream.JetStream) {
	t.Helper()
	srv, js := testutil.StartOutbox(t, limits)
	if _, err := outbox.EnsureConsumer(context.Background(), js, "probe", time.Minute, 100000); err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL(), js
}

// storedIDs returns the ids of the events in the outbox stream, in order.
func storedIDs(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	ids := []string{}
	for _, e := range testutil.StoredEnvelopes(t, js) {
		ids = append(ids, e.ID)
	}
	return ids
}

// oneErrorLine checks that stderr is exactly one "emit: ..." line that
// contains want.
func oneErrorLine(t *testing.T, r result, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "emit: ") || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr should be one line starting with \"emit: \": %q", r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr %q does not mention %q", r.stderr, want)
	}
}

func TestEmitPrintsNewUUIDAndEventReachesSink(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	n := testutil.StartNode(t, "node_id: emit-node\nsinks:\n  - name: audit\n    type: webhook\n    url: "+rcv.URL()+"\n", nil)

	r := emit(t, "", "--url", n.URL(), "--type", "VOLUME_CREATE", "--key", "gv1", "--level", "INFO", "--data", `{"name":"gv1"}`)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("emit: %v; want exit 0 and nothing on stderr", r)
	}
	id := strings.TrimSuffix(r.stdout, "\n")
	if !uuidV7.MatchString(id) || r.stdout != id+"\n" {
		t.Fatalf("stdout = %q, want exactly one UUIDv7 line", r.stdout)
	}

	testutil.Eventually(t, waitFor, func() bool { return rcv.Seen(id) == 1 }, "event %s delivered", id)
	var got struct {
		ID    string          `json:"id"`
		Type  string          `json:"type"`
		Key   string          `json:"key"`
		Level string          `json:"level"`
		Data  json.RawMessage `json:"data"`
	}
	body := rcv.Requests()[0].Body
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("delivered body %s: %v", body, err)
	}
	if got.ID != id || got.Type != "VOLUME_CREATE" || got.Key != "gv1" || got.Level != "INFO" || string(got.Data) != `{"name":"gv1"}` {
		t.Errorf("delivered event = %s, want the emitted one with id %s", body, id)
	}
}

func TestEmitCloudStackFlagsReachTheStoredEnvelope(t *testing.T) {
	url, js := outboxWithSink(t, outbox.Limits{})
	desc := "Successfully completed creating volume. Volume Id: 3"
	r := emit(t, "", "--url", url, "--id", "cs-1", "--type", "VOLUME.CREATE",
		"--state", "Completed", "--level", "INFO", "--start-id", "cs-0",
		"--description", desc, "--account", "admin", "--domain", "ROOT", "--user", "admin-user",
		"--resource-id", "3", "--resource-type", "Volume")
	if r.code != 0 || r.stdout != "cs-1\n" || r.stderr != "" {
		t.Fatalf("emit: %v; want exit 0 and the id", r)
	}
	got := testutil.StoredEnvelopes(t, js)
	if len(got) != 1 {
		t.Fatalf("stored %d events, want 1", len(got))
	}
	e := got[0]
	want := map[string][2]string{
		"description":   {e.Description, desc},
		"account":       {e.Account, "admin"},
		"domain":        {e.Domain, "ROOT"},
		"user":          {e.User, "admin-user"},
		"resource_id":   {e.ResourceID, "3"},
		"resource_type": {e.ResourceType, "Volume"},
		"state":         {string(e.State), "Completed"},
		"start_id":      {e.StartID, "cs-0"},
	}
	for name, gw := range want {
		if gw[0] != gw[1] {
			t.Errorf("stored %s = %q, want %q", name, gw[0], gw[1])
		}
	}
}

func TestEmitWithoutCloudStackFlagsStoresNoCloudStackFields(t *testing.T) {
	url, js := outboxWithSink(t, outbox.Limits{})
	if r := emit(t, "", "--url", url, "--id", "plain-1", "--type", "T"); r.code != 0 {
		t.Fatalf("emit: %v", r)
	}
	got := testutil.StoredEnvelopes(t, js)
	if len(got) != 1 {
		t.Fatalf("stored %d events, want 1", len(got))
	}
	if e := got[0]; e.Description != "" || e.Account != "" || e.Domain != "" || e.User != "" || e.ResourceID != "" || e.ResourceType != "" {
		t.Errorf("stored %+v, want no CloudStack fields", e)
	}
}

func TestEmitFileCarriesCloudStackFields(t *testing.T) {
	url, js := outboxWithSink(t, outbox.Limits{})
	stdin := `{"id":"csf-1","type":"VOLUME.CREATE","description":"Volume Id: 3","account":"admin",` +
		`"domain":"ROOT","user":"u1","resource_id":"3","resource_type":"Volume"}` + "\n" +
		`{"id":"csf-2","type":"T","account":"bad\u0007"}` + "\n"
	r := emit(t, stdin, "--url", url, "--file", "-")
	if r.code != 2 || !strings.Contains(r.stderr, "emit: line 2: ") || !strings.Contains(r.stderr, "account") {
		t.Fatalf("emit --file: %v; want line 2 refused for its account", r)
	}
	got := testutil.StoredEnvelopes(t, js)
	if len(got) != 1 {
		t.Fatalf("stored %d events, want line 1 only", len(got))
	}
	if e := got[0]; e.ID != "csf-1" || e.Description != "Volume Id: 3" || e.Account != "admin" || e.Domain != "ROOT" ||
		e.User != "u1" || e.ResourceID != "3" || e.ResourceType != "Volume" {
		t.Errorf("stored %+v, want line 1's CloudStack fields", e)
	}
}

func TestEmitSameIDTwiceStoresOnce(t *testing.T) {
	url, js := outboxWithSink(t, outbox.Limits{})
	for i := range 2 {
		r := emit(t, "", "--url", url, "--id", "vol-create-42", "--type", "VOLUME_CREATE")
		if r.code != 0 || r.stdout != "vol-create-42\n" || r.stderr != "" {
			t.Fatalf("emit #%d: %v; want exit 0 and the given id", i+1, r)
		}
	}
	if got := storedIDs(t, js); !slices.Equal(got, []string{"vol-create-42"}) {
		t.Errorf("stored %v, want the event once", got)
	}
}

func TestEmitRejectsBadInputWithOneLineMessage(t *testing.T) {
	url, js := outboxWithSink(t, outbox.Limits{})
	big := `"` + strings.Repeat("x", 500) + `"`
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"data that is not JSON", []string{"--type", "T", "--data", `{"name":`}, 2, "--data is not valid JSON"},
		{"no type and no file", []string{"--key", "gv1"}, 2, "--type is required"},
		{"both file and type", []string{"--file", "-", "--type", "T"}, 2, "either --file or --type, not both"},
		{"positional argument", []string{"--type", "T", "extra"}, 2, `unexpected argument "extra"`},
		{"undefined flag", []string{"--type", "T", "--colour", "red"}, 2, "colour"},
		{"level not known", []string{"--type", "T", "--level", "LOUD"}, 2, `level "LOUD"`},
		{"state not known", []string{"--type", "T", "--state", "Finished"}, 2, `state "Finished"`},
		{"description too long", []string{"--type", "T", "--description", strings.Repeat("d", 4097)}, 2, "description is 4097 bytes long"},
		{"account with a newline", []string{"--type", "T", "--account", "admin\nroot"}, 2, "account"},
		{"domain too long", []string{"--type", "T", "--domain", strings.Repeat("d", 256)}, 2, "domain is 256 bytes long"},
		{"user with a tab", []string{"--type", "T", "--user", "a\tb"}, 2, "user"},
		{"resource id with a control character", []string{"--type", "T", "--resource-id", "3\x1b"}, 2, "resource_id"},
		{"resource type not UTF-8", []string{"--type", "T", "--resource-type", "Vol\xff"}, 2, "resource_type is not valid UTF-8"},
		{"type with spaces", []string{"--type", "VOLUME CREATE"}, 2, `type "VOLUME CREATE"`},
		{"type with a wildcard", []string{"--type", "VOLUME.*"}, 2, `type "VOLUME.*"`},
		{"id with spaces", []string{"--type", "T", "--id", "a b"}, 2, `id "a b"`},
		{"event above max size", []string{"--type", "T", "--max-event-size", "300", "--data", big}, 2, "event too large"},
		{"file that does not exist", []string{"--file", filepath.Join(t.TempDir(), "missing.jsonl")}, 1, "no such file"},
		{"unreachable outbox without a spool", []string{"--url", "nats://127.0.0.1:1", "--timeout", "1s", "--no-spool", "--type", "T"}, 1, "outbox unreachable"},
		{"flush with an event", []string{"--flush", "--type", "T"}, 2, "--flush sends the spool only"},
		{"flush without a spool", []string{"--flush", "--no-spool"}, 2, "--flush and --no-spool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// --url comes first so that a case may override it.
			r := emit(t, "", append([]string{"--url", url}, tt.args...)...)
			if r.code != tt.code {
				t.Errorf("exit code = %d, want %d (%v)", r.code, tt.code, r)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			oneErrorLine(t, r, tt.want)
		})
	}
	if got := storedIDs(t, js); len(got) != 0 {
		t.Errorf("rejected input stored events %v", got)
	}
}

func TestEmitUnreachableOutboxFailsWithinTimeout(t *testing.T) {
	start := time.Now()
	r := emit(t, "", "--url", "nats://127.0.0.1:1", "--timeout", "1s", "--no-spool", "--type", "T")
	if r.code != 1 {
		t.Errorf("exit code = %d, want 1 (%v)", r.code, r)
	}
	oneErrorLine(t, r, "nats://127.0.0.1:1")
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s with --timeout 1s", took)
	}
}

func TestEmitIntoFullOutboxReportsOutboxFull(t *testing.T) {
	url, js := outboxWithSink(t, outbox.Limits{MaxBytes: 8 << 10})
	data := `"` + strings.Repeat("x", 200) + `"`
	var r result
	ok := 0
	for range 1000 {
		r = emit(t, "", "--url", url, "--type", "T", "--data", data)
		if r.code != 0 {
			break
		}
		ok++
	}
	if r.code != 1 {
		t.Fatalf("after %d events: %v; want exit 1 once the outbox is full", ok, r)
	}
	if ok == 0 {
		t.Errorf("the first event was refused; the outbox should have taken some")
	}
	oneErrorLine(t, r, "outbox full")
	if got := len(storedIDs(t, js)); got != ok {
		t.Errorf("stored %d events, want the %d acknowledged ones", got, ok)
	}
}

func TestEmitURLDefaultsToCourierURL(t *testing.T) {
	url, js := outboxWithSink(t, outbox.Limits{})
	t.Setenv("COURIER_URL", url)
	r := emit(t, "", "--id", "from-env", "--type", "T")
	if r.code != 0 || r.stdout != "from-env\n" {
		t.Fatalf("emit without --url: %v; want it stored at $COURIER_URL", r)
	}
	if got := storedIDs(t, js); !slices.Equal(got, []string{"from-env"}) {
		t.Errorf("stored %v, want [from-env]", got)
	}
}

func TestEmitFlagURLOverridesCourierURL(t *testing.T) {
	url, js := outboxWithSink(t, outbox.Limits{})
	t.Setenv("COURIER_URL", "nats://127.0.0.1:1")
	r := emit(t, "", "--url", url, "--id", "from-flag", "--type", "T")
	if r.code != 0 {
		t.Fatalf("emit with --url: %v", r)
	}
	if got := storedIDs(t, js); !slices.Equal(got, []string{"from-flag"}) {
		t.Errorf("stored %v, want [from-flag]", got)
	}
}

func TestEmitFileFromStdin(t *testing.T) {
	tests := []struct {
		name       string
		stdin      string
		code       int
		wantStored []string
		wantStderr []string
	}{
		{
			name:       "every line stored",
			stdin:      `{"id":"f-1","type":"VOLUME_CREATE","data":{"name":"gv1"}}` + "\n" + `{"id":"f-2","type":"VOLUME_START"}` + "\n" + `{"id":"f-3","type":"VOLUME_STOP","level":"WARN"}` + "\n",
			wantStored: []string{"f-1", "f-2", "f-3"},
			wantStderr: []string{"emit: 3 stored, 0 spooled, 0 already stored (duplicates), 0 failed"},
		},
		{
			name:       "blank lines skipped",
			stdin:      "\n" + `{"id":"b-1","type":"T"}` + "\n\n\n" + `{"id":"b-2","type":"T"}` + "\r\n\r\n",
			wantStored: []string{"b-1", "b-2"},
			wantStderr: []string{"emit: 2 stored"},
		},
		{
			name:       "last line without newline",
			stdin:      `{"id":"n-1","type":"T"}` + "\n" + `{"id":"n-2","type":"T"}`,
			wantStored: []string{"n-1", "n-2"},
			wantStderr: []string{"emit: 2 stored"},
		},
		{
			name:       "the same id twice is stored once",
			stdin:      `{"id":"d-1","type":"T"}` + "\n" + `{"id":"d-1","type":"T"}` + "\n",
			wantStored: []string{"d-1"},
			wantStderr: []string{"emit: 1 stored, 0 spooled, 1 already stored (duplicates), 0 failed"},
		},
		{
			name:       "malformed line 3 stops after lines 1 and 2",
			stdin:      `{"id":"m-1","type":"T"}` + "\n" + `{"id":"m-2","type":"T"}` + "\n" + `{"id":"m-3","type":` + "\n" + `{"id":"m-4","type":"T"}` + "\n",
			code:       2,
			wantStored: []string{"m-1", "m-2"},
			wantStderr: []string{"emit: line 3: ", "stopping here", "emit: 2 stored"},
		},
		{
			name:       "line numbers count blank lines",
			stdin:      `{"id":"l-1","type":"T"}` + "\n\n" + `not json` + "\n",
			code:       2,
			wantStored: []string{"l-1"},
			wantStderr: []string{"emit: line 3: "},
		},
		{
			name:       "unknown field rejected",
			stdin:      `{"id":"u-1","type":"T","colour":"red"}` + "\n",
			code:       2,
			wantStored: []string{},
			wantStderr: []string{"emit: line 1: ", `unknown field "colour"`},
		},
		{
			name:       "trailing data after the object rejected",
			stdin:      `{"id":"t-1","type":"T"} {"id":"t-2","type":"T"}` + "\n",
			code:       2,
			wantStored: []string{},
			wantStderr: []string{"emit: line 1: ", "trailing data"},
		},
		{
			name:       "invalid envelope names its line",
			stdin:      `{"id":"v-1","type":"T"}` + "\n" + `{"id":"v-2","type":"BAD TYPE"}` + "\n",
			code:       2,
			wantStored: []string{"v-1"},
			wantStderr: []string{"emit: line 2: ", `type "BAD TYPE"`},
		},
		{
			name:       "a line over the size limit names its line and the limit",
			stdin:      `{"id":"big-1","type":"T"}` + "\n" + `{"id":"big-2","type":"T","data":"` + strings.Repeat("x", 10<<20) + `"}` + "\n",
			code:       2,
			wantStored: []string{"big-1"},
			wantStderr: []string{"emit: line 2 is longer than 1114112 bytes (--max-event-size 1048576", "stopping here"},
		},
		{
			name:       "empty input stores nothing",
			stdin:      "",
			wantStored: []string{},
			wantStderr: []string{"emit: 0 stored, 0 spooled, 0 already stored (duplicates), 0 failed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, js := outboxWithSink(t, outbox.Limits{})
			r := emit(t, tt.stdin, "--url", url, "--file", "-")
			if r.code != tt.code {
				t.Errorf("exit code = %d, want %d (%v)", r.code, tt.code, r)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing: the summary goes to stderr", r.stdout)
			}
			for _, want := range tt.wantStderr {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr %q does not contain %q", r.stderr, want)
				}
			}
			if strings.Contains(r.stderr, "panic") {
				t.Errorf("stderr mentions a panic: %q", r.stderr)
			}
			if got := storedIDs(t, js); !slices.Equal(got, tt.wantStored) {
				t.Errorf("stored %v, want %v", got, tt.wantStored)
			}
		})
	}
}

func TestEmitFileFromPath(t *testing.T) {
	url, js := outboxWithSink(t, outbox.Limits{})
	path := filepath.Join(t.TempDir(), "events.jsonl")
	var b strings.Builder
	var want []string
	for i := range 50 {
		id := fmt.Sprintf("p-%02d", i)
		want = append(want, id)
		fmt.Fprintf(&b, `{"id":%q,"type":"VOLUME_CREATE","key":"gv%d"}`+"\n", id, i%3)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := emit(t, "", "--url", url, "--file", path)
	if r.code != 0 || !strings.Contains(r.stderr, "emit: 50 stored, 0 spooled, 0 already stored (duplicates), 0 failed") {
		t.Fatalf("emit --file: %v; want exit 0 and 50 stored", r)
	}
	if got := storedIDs(t, js); !slices.Equal(got, want) {
		t.Errorf("stored %v, want %v in file order", got, want)
	}

	// Emitting the file again after a failure is safe: nothing is stored twice.
	r = emit(t, "", "--url", url, "--file", path)
	if r.code != 0 || !strings.Contains(r.stderr, "emit: 0 stored, 0 spooled, 50 already stored (duplicates), 0 failed") {
		t.Fatalf("emit --file again: %v; want every event reported as a duplicate", r)
	}
	if got := len(storedIDs(t, js)); got != 50 {
		t.Errorf("stored %d events after emitting the file twice, want 50", got)
	}
}

func TestEmitFileLineAboveMaxEventSizeIsRejected(t *testing.T) {
	url, js := outboxWithSink(t, outbox.Limits{})
	stdin := `{"id":"s-1","type":"T"}` + "\n" +
		`{"id":"s-2","type":"T","data":"` + strings.Repeat("x", 2000) + `"}` + "\n"
	r := emit(t, stdin, "--url", url, "--max-event-size", "1000", "--file", "-")
	if r.code == 0 {
		t.Fatalf("emit: %v; want a non-zero exit for the oversized line", r)
	}
	if !strings.Contains(r.stderr, "line 2") || !strings.Contains(r.stderr, "event too large") {
		t.Errorf("stderr %q should name line 2 and say the event is too large", r.stderr)
	}
	if got := storedIDs(t, js); !slices.Equal(got, []string{"s-1"}) {
		t.Errorf("stored %v, want [s-1]", got)
	}
}

func TestEmitFileReportsEveryLineStoredToSink(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	n := testutil.StartNode(t, "sinks:\n  - name: audit\n    type: webhook\n    url: "+rcv.URL()+"\n", nil)
	var b strings.Builder
	for i := range 20 {
		fmt.Fprintf(&b, `{"id":"r-%02d","type":"VOLUME_CREATE"}`+"\n", i)
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--url", n.URL(), "--file", "-"}, strings.NewReader(b.String()), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	testutil.Eventually(t, waitFor, func() bool { return rcv.Distinct() == 20 }, "20 events delivered, have %d", rcv.Distinct())
	for i := range 20 {
		if id := fmt.Sprintf("r-%02d", i); rcv.Seen(id) != 1 {
			t.Errorf("event %s delivered %d times, want 1", id, rcv.Seen(id))
		}
	}
}

// errReader fails after its data, as a broken pipe or disk would.
type errReader struct{ data io.Reader }

func (r errReader) Read(p []byte) (int, error) {
	n, err := r.data.Read(p)
	if errors.Is(err, io.EOF) {
		return n, errors.New("read error: device gone")
	}
	return n, err
}

func TestEmitFileReadErrorExitsNonZeroAfterStoringEarlierLines(t *testing.T) {
	url, js := outboxWithSink(t, outbox.Limits{})
	in := errReader{strings.NewReader(`{"id":"e-1","type":"T"}` + "\n")}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--url", url, "--file", "-"}, in, &stdout, &stderr)
	if code == 0 {
		t.Fatalf("exit 0 despite a read error; stderr %q", stderr.String())
	}
	if !strings.Contains(stderr.String(), "device gone") {
		t.Errorf("stderr %q should carry the read error", stderr.String())
	}
	if got := storedIDs(t, js); !slices.Equal(got, []string{"e-1"}) {
		t.Errorf("stored %v, want [e-1]", got)
	}
}

func TestEmitFileSkipsWhitespaceOnlyLines(t *testing.T) {
	url, js := outboxWithSink(t, outbox.Limits{})
	stdin := `{"id":"w-1","type":"T"}` + "\n  \t\n" + `{"id":"w-2","type":"T"}` + "\n"
	r := emit(t, stdin, "--url", url, "--file", "-")
	if r.code != 0 {
		t.Errorf("exit code = %d, want 0: %v", r.code, r)
	}
	if got := storedIDs(t, js); !slices.Equal(got, []string{"w-1", "w-2"}) {
		t.Errorf("stored %v, want [w-1 w-2]", got)
	}
}

func TestEmitHelpPrintsUsageToGivenWriters(t *testing.T) {
	r := emit(t, "", "--help")
	if r.code != 0 {
		t.Errorf("exit code = %d, want 0 for --help", r.code)
	}
	if !strings.Contains(r.stdout+r.stderr, "-type") {
		t.Errorf("--help printed no usage to the given writers: %v", r)
	}
}

func TestEmitNonPositiveTimeoutIsAUsageError(t *testing.T) {
	for _, timeout := range []string{"0", "-1s"} {
		t.Run(timeout, func(t *testing.T) {
			url, js := outboxWithSink(t, outbox.Limits{})
			r := emit(t, "", "--url", url, "--timeout", timeout, "--id", "t-1", "--type", "T")
			if r.code != 2 {
				t.Errorf("exit code = %d, want 2 (%v)", r.code, r)
			}
			oneErrorLine(t, r, "--timeout")
			if got := storedIDs(t, js); len(got) != 0 {
				t.Errorf("stored %v after a usage error", got)
			}
		})
	}
}

// spooledFiles lists the events waiting in a spool directory.
func spooledFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".json"))
	}
	return names
}

func TestEmitSpoolsWhenTheOutboxIsUnreachableAndFlushSendsIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	closed := "nats://courier:s3cretpw@127.0.0.1:1"
	r := emit(t, "", "--url", closed, "--timeout", "1s", "--spool", dir, "--type", "VOLUME_CREATE", "--data", `{"name":"gv1"}`)
	if r.code != 0 {
		t.Fatalf("emit with the outbox unreachable: %v; want exit 0, the event is safe", r)
	}
	id := strings.TrimSuffix(r.stdout, "\n")
	if !uuidV7.MatchString(id) || r.stdout != id+"\n" {
		t.Fatalf("stdout = %q, want exactly the event id", r.stdout)
	}
	oneErrorLine(t, r, "spooled")
	for _, want := range []string{id, dir, "outbox unreachable at nats://127.0.0.1:1", "will be sent"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q should mention %q", r.stderr, want)
		}
	}
	if strings.Contains(r.stderr, "s3cretpw") {
		t.Errorf("stderr %q shows the URL's password", r.stderr)
	}
	if got := spooledFiles(t, dir); !slices.Equal(got, []string{id}) {
		t.Fatalf("spool holds %v, want [%s]", got, id)
	}

	// Still unreachable: the flush says what remains and fails.
	r = emit(t, "", "--url", closed, "--timeout", "1s", "--spool", dir, "--flush")
	if r.code != 1 || !strings.Contains(r.stderr, "emit: 0 sent, 1 remain in "+dir) {
		t.Errorf("flush with the outbox unreachable: %v; want exit 1 and 1 remaining", r)
	}
	if strings.Contains(r.stderr, "s3cretpw") {
		t.Errorf("stderr %q shows the URL's password", r.stderr)
	}

	url, js := outboxWithSink(t, outbox.Limits{})
	r = emit(t, "", "--url", url, "--spool", dir, "--flush")
	if r.code != 0 || r.stdout != "" || r.stderr != "emit: 1 sent, 0 remain in "+dir+"\n" {
		t.Fatalf("flush: %v; want exit 0 and one line: 1 sent, 0 remain", r)
	}
	if got := storedIDs(t, js); !slices.Equal(got, []string{id}) {
		t.Errorf("stored %v, want the spooled event with its id %s", got, id)
	}
	if got := spooledFiles(t, dir); len(got) != 0 {
		t.Errorf("spool still holds %v", got)
	}
}

func TestEmitSendsEarlierSpooledEventsFirst(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	r := emit(t, "", "--url", "nats://127.0.0.1:1", "--timeout", "1s", "--spool", dir, "--id", "spooled-1", "--type", "T")
	if r.code != 0 || r.stdout != "spooled-1\n" {
		t.Fatalf("emit with the outbox unreachable: %v", r)
	}
	url, js := outboxWithSink(t, outbox.Limits{})
	r = emit(t, "", "--url", url, "--spool", dir, "--id", "direct-1", "--type", "T")
	if r.code != 0 || r.stdout != "direct-1\n" || r.stderr != "" {
		t.Fatalf("emit: %v; want exit 0, the id and a quiet flush", r)
	}
	if got := storedIDs(t, js); !slices.Equal(got, []string{"spooled-1", "direct-1"}) {
		t.Errorf("stored %v, want the spooled event first", got)
	}
	if got := spooledFiles(t, dir); len(got) != 0 {
		t.Errorf("spool still holds %v", got)
	}
}

func TestEmitSpoolsWhenTheOutboxHasNoStream(t *testing.T) {
	srv, js := testutil.StartOutbox(t, outbox.Limits{})
	if err := js.DeleteStream(context.Background(), outbox.StreamEvents); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "spool")
	r := emit(t, "", "--url", srv.ClientURL(), "--timeout", "1s", "--spool", dir, "--id", "no-stream-1", "--type", "T")
	if r.code != 0 || r.stdout != "no-stream-1\n" {
		t.Fatalf("emit: %v; want exit 0 and the id", r)
	}
	oneErrorLine(t, r, "outbox stream not found")
	if got := spooledFiles(t, dir); !slices.Equal(got, []string{"no-stream-1"}) {
		t.Errorf("spool holds %v, want [no-stream-1]", got)
	}
}

func TestEmitFileSpoolsEveryLineWhenTheOutboxIsUnreachable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	stdin := `{"id":"sf-1","type":"T"}` + "\n" + `{"id":"sf-2","type":"T"}` + "\n" + `{"id":"sf-3","type":"T"}` + "\n"
	r := emit(t, stdin, "--url", "nats://127.0.0.1:1", "--timeout", "1s", "--spool", dir, "--file", "-")
	if r.code != 0 {
		t.Fatalf("emit --file: %v; want exit 0", r)
	}
	for _, want := range []string{"emit: 0 stored, 3 spooled, 0 already stored (duplicates), 0 failed", "3 events spooled in " + dir, "outbox unreachable"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q does not contain %q", r.stderr, want)
		}
	}
	if got := spooledFiles(t, dir); !slices.Equal(got, []string{"sf-1", "sf-2", "sf-3"}) {
		t.Errorf("spool holds %v, want the 3 events", got)
	}
}

func TestEmitWithNoSpoolWritesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	r := emit(t, "", "--url", "nats://127.0.0.1:1", "--timeout", "1s", "--spool", dir, "--no-spool", "--type", "T")
	if r.code != 1 || r.stdout != "" {
		t.Errorf("emit --no-spool: %v; want exit 1 and no id", r)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("--no-spool created the spool directory: %v", err)
	}
}

func TestEmitGoesOnWithoutASpoolItCannotOpen(t *testing.T) {
	url, js := outboxWithSink(t, outbox.Limits{})
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := emit(t, "", "--url", url, "--spool", filepath.Join(notADir, "spool"), "--id", "no-spool-dir", "--type", "T")
	if r.code != 0 || r.stdout != "no-spool-dir\n" {
		t.Fatalf("emit: %v; want the event stored", r)
	}
	oneErrorLine(t, r, "going on without a spool")
	if got := storedIDs(t, js); !slices.Equal(got, []string{"no-spool-dir"}) {
		t.Errorf("stored %v", got)
	}
}

func TestDefaultSpoolDir(t *testing.T) {
	home := func() (string, error) { return "/home/ops", nil }
	noHome := func() (string, error) { return "", errors.New("$HOME is not defined") }
	tests := []struct {
		name string
		env  map[string]string
		home func() (string, error)
		want string
	}{
		{"COURIER_SPOOL first", map[string]string{"COURIER_SPOOL": "/var/spool/courier", "XDG_STATE_HOME": "/state"}, home, "/var/spool/courier"},
		{"then XDG_STATE_HOME", map[string]string{"XDG_STATE_HOME": "/state"}, home, "/state/courier/spool"},
		{"a relative XDG_STATE_HOME is ignored", map[string]string{"XDG_STATE_HOME": "state"}, home, "/home/ops/.local/state/courier/spool"},
		{"then the home directory", nil, home, "/home/ops/.local/state/courier/spool"},
		{"no home: none", nil, noHome, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := defaultSpoolDir(func(k string) string { return tt.env[k] }, tt.home); got != tt.want {
				t.Errorf("defaultSpoolDir = %q, want %q", got, tt.want)
			}
		})
	}
}

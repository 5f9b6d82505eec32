package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/sinks"
	"github.com/courierhq/courier/sinks/builtin"
)

// memoryKind is a kind of sink a program defines for itself: it proves the
// list of kinds is open. Its sinks append each event to a list the test
// reads, and fail the first call of every event.
type memoryKind struct {
	mu       sync.Mutex
	calls    map[string]int
	received map[string][]string // list name -> event ids delivered
}

type memorySettings struct {
	List    string        `yaml:"list"`
	Timeout time.Duration `yaml:"timeout"`
}

func (s *memorySettings) Target() string                { return "memory list " + s.List }
func (s *memorySettings) AttemptTimeout() time.Duration { return s.Timeout }
func (s *memorySettings) SetDefaults() {
	if s.Timeout == 0 {
		s.Timeout = time.Second
	}
}
func (s *memorySettings) Validate() error {
	if s.List == "" {
		return errors.New("list is required")
	}
	return nil
}

func (*memoryKind) Name() string                { return "memory" }
func (*memoryKind) NewSettings() sinks.Settings { return &memorySettings{} }
func (k *memoryKind) New(s sinks.Settings, _ sinks.Env) (sinks.Sink, error) {
	ms, err := sinks.SettingsOf[*memorySettings]("memory", s)
	if err != nil {
		return nil, err
	}
	return memorySink{k, ms.List}, nil
}

type memorySink struct {
	k    *memoryKind
	list string
}

func (m memorySink) Send(_ context.Context, e *event.Envelope) error {
	m.k.mu.Lock()
	defer m.k.mu.Unlock()
	m.k.calls[e.ID]++
	if m.k.calls[e.ID] == 1 {
		return errors.New("not yet")
	}
	m.k.received[m.list] = append(m.k.received[m.list], e.ID)
	return nil
}

func (memorySink) Close(context.Context) error { return nil }

func (k *memoryKind) delivered(list string) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.received[list]...)
}

// A kind the program registers gets what the built-in ones get: its
// definitions are decoded strictly into its own settings and validated,
// it is listed with its target, and its sinks' failures are retried.
func TestProgramsOwnKindOfSink(t *testing.T) {
	kind := &memoryKind{calls: map[string]int{}, received: map[string][]string{}}
	kinds := builtin.Kinds(kind)

	_, err := config.Parse([]byte("sinks:\n  - name: m\n    type: memory\n    list: audit\n    colour: blue\n"), nil, kinds)
	if err == nil || !strings.Contains(err.Error(), `unknown key "colour"`) {
		t.Errorf("a key the kind does not have: %v, want it refused", err)
	}
	_, err = config.Parse([]byte("sinks:\n  - name: m\n    type: memory\n"), nil, kinds)
	if err == nil || !strings.Contains(err.Error(), "list is required") {
		t.Errorf("settings the kind refuses: %v, want its message", err)
	}
	_, err = config.Parse([]byte("sinks:\n  - name: m\n    type: memory\n    list: audit\n"), nil, builtin.Kinds())
	if err == nil || !strings.Contains(err.Error(), `unknown type "memory" (known: webhook, amqp, kafka or handler)`) {
		t.Errorf("a kind the program did not pass: %v, want it unknown", err)
	}

	n := testutil.StartNodeOfKinds(t, "node_id: kinds\nsinks:\n  - name: m\n    type: memory\n    list: audit\n    "+fastRetry+"\n", nil, kinds)
	if got := n.Config.Sinks[0].Target(); got != "memory list audit" {
		t.Errorf("target %q, want the kind's own", got)
	}
	p := n.Publisher(t)
	var want []string
	for i := range 5 {
		want = append(want, emit(t, p, event.Envelope{ID: fmt.Sprintf("own-%d", i), Type: "VOLUME_SET"}))
	}
	testutil.Eventually(t, waitFor, func() bool { return len(kind.delivered("audit")) == len(want) }, "every event delivered after a retry")
	kind.mu.Lock()
	defer kind.mu.Unlock()
	for _, id := range want {
		if kind.calls[id] != 2 {
			t.Errorf("%s: %d calls, want 2 (one failure retried)", id, kind.calls[id])
		}
	}
}

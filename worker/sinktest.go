package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/netguard"
	"github.com/courierhq/courier/retry"
	"github.com/courierhq/courier/sinks"
)

// TestResult is the outcome of one test event sent to a sink.
type TestResult struct {
	EventID string
	Took    time.Duration
	Kind    retry.Kind // when Err is set: how the failure classifies
	Err     error
}

// SendTestEvent builds the sink and sends it one COURIER_TEST event, as
// gluster-eventsapi webhook-test does; nothing goes through the outbox.
func SendTestEvent(ctx context.Context, sc config.Sink, node, version string, guard *netguard.Guard) TestResult {
	if k, ok := sc.Kind.(sinks.NoTestEvents); ok {
		return TestResult{Kind: retry.Permanent, Err: errors.New(k.NoTestEvents())}
	}
	sink, err := BuildSink(sc, version, nil, guard)
	if err != nil {
		return TestResult{Err: err, Kind: retry.Permanent}
	}
	defer sink.Close(ctx)
	ev := event.Envelope{Type: "COURIER_TEST", Source: "courier-worker", Data: json.RawMessage(`{"message":"test event from Courier"}`)}
	if err := ev.Complete(node); err != nil {
		return TestResult{Err: err, Kind: retry.Permanent}
	}
	start := time.Now()
	err = sink.Send(ctx, &ev)
	res := TestResult{EventID: ev.ID, Took: time.Since(start).Round(time.Millisecond), Err: err}
	if err != nil {
		res.Kind = retry.Classify(err).Kind
	}
	return res
}

// SubjectSinkTest is where operator commands ask every node to test a
// sink, as gluster-eventsapi webhook-test asks every peer: a destination
// one node reaches may be out of another's reach. With outbox.auth,
// producers may not publish on it (they may publish events only); without
// it, whoever reaches the outbox's port may, as they may do everything
// else there, so each node answers at most maxSinkTests at once.
const SubjectSinkTest = "courier.control.sink-test"

// SinkTestReply is one node's answer.
type SinkTestReply struct {
	Node    string `json:"node"`
	Sink    string `json:"sink"`
	OK      bool   `json:"ok"`
	EventID string `json:"event_id,omitempty"`
	Took    string `json:"took,omitempty"`
	Kind    string `json:"kind,omitempty"` // when not OK: retryable or permanent
	Error   string `json:"error,omitempty"`
	// Down is set by the asker for a node down, which was not asked.
	Down bool `json:"down,omitempty"`
}

type sinkTestRequest struct {
	Sink string `json:"sink"`
}

// maxSinkTests bounds the test events a node sends at once.
const maxSinkTests = 4

// answerSinkTests has this node answer every sink-test request with a
// test event sent from here, through the sink as this node runs it (its
// own secrets and webhook policy), until ctx ends: Shutdown waits for the
// answers under way.
func (w *Worker) answerSinkTests(ctx context.Context) error {
	var (
		mu      sync.Mutex // guards closed, and Add on answers against its Wait
		closed  bool
		answers sync.WaitGroup
	)
	slots := make(chan struct{}, maxSinkTests)
	sub, err := w.nc.Subscribe(SubjectSinkTest, func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			return
		}
		select {
		case slots <- struct{}{}:
		default:
			w.replySinkTest(m, SinkTestReply{Node: w.cfg.NodeID, Error: "busy: too many sink tests at once"})
			return
		}
		answers.Go(func() { // a slow sink must not hold up other requests
			defer func() { <-slots }()
			w.answerSinkTest(ctx, m)
		})
	})
	if err != nil {
		return fmt.Errorf("answer sink tests: %w", err)
	}
	w.wg.Go(func() {
		<-ctx.Done()
		_ = sub.Unsubscribe()
		mu.Lock()
		closed = true
		mu.Unlock()
		answers.Wait()
	})
	return nil
}

func (w *Worker) answerSinkTest(ctx context.Context, m *nats.Msg) {
	reply := SinkTestReply{Node: w.cfg.NodeID}
	var req sinkTestRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		reply.Error = fmt.Sprintf("bad request: %v", err)
	} else if sc, ok := w.runningConfig(req.Sink); !ok {
		reply.Sink, reply.Error = req.Sink, "this node does not run the sink (its log and worker status say why)"
	} else {
		reply.Sink = req.Sink
		ctx, cancel := context.WithTimeout(ctx, sc.AttemptTimeout())
		res := SendTestEvent(ctx, sc, w.cfg.NodeID, w.version, w.guard)
		cancel()
		reply.EventID, reply.Took, reply.OK = res.EventID, res.Took.String(), res.Err == nil
		if res.Err != nil {
			reply.Kind, reply.Error = res.Kind.String(), res.Err.Error()
		}
	}
	w.replySinkTest(m, reply)
}

func (w *Worker) replySinkTest(m *nats.Msg, reply SinkTestReply) {
	b, _ := json.Marshal(reply)
	_ = m.Respond(b)
}

// runningConfig is the definition this node runs sink under.
func (w *Worker) runningConfig(sink string) (config.Sink, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if r := w.running[sink]; r != nil {
		return r.cfg, true
	}
	return config.Sink{}, false
}

// AskSinkTest asks every node's worker to test sink and returns the
// answers that arrive within wait, sooner once every node in expect
// answered.
func AskSinkTest(ctx context.Context, nc *nats.Conn, sink string, expect []string, wait time.Duration) ([]SinkTestReply, error) {
	req, err := json.Marshal(sinkTestRequest{Sink: sink})
	if err != nil {
		return nil, err
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("ask the nodes: %w", err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(SubjectSinkTest, inbox, req); err != nil {
		return nil, fmt.Errorf("ask the nodes: %w", err)
	}
	pending := map[string]bool{}
	for _, n := range expect {
		pending[n] = true
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var out []SinkTestReply
	for len(pending) > 0 || len(expect) == 0 {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break // the wait is over: whoever did not answer is reported as such
		}
		var r SinkTestReply
		if json.Unmarshal(m.Data, &r) == nil {
			out = append(out, r)
			delete(pending, r.Node)
		}
	}
	return out, nil
}

package observe

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// Receiver is the webhook endpoint of the scenario: /flaky refuses each
// event's first attempt with 503 and takes the retry; /refuse answers 400
// (permanent, so the event is dead-lettered) until Accept is called.
type Receiver struct {
	URL      string
	srv      *http.Server
	accept   atomic.Bool
	mu       sync.Mutex
	seen     map[string]int
	received map[string]map[string]bool // path -> ids accepted
}

// StartReceiver listens on loopback.
func StartReceiver() (*Receiver, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Receiver{URL: "http://" + l.Addr().String(), seen: map[string]int{}, received: map[string]map[string]bool{}}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve)}
	go func() { _ = r.srv.Serve(l) }()
	return r, nil
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var env struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &env)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[req.URL.Path+" "+env.ID]++
	switch {
	case req.URL.Path == "/flaky" && r.seen[req.URL.Path+" "+env.ID] == 1:
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	case req.URL.Path == "/refuse" && !r.accept.Load():
		http.Error(w, "refused", http.StatusBadRequest)
		return
	}
	if r.received[req.URL.Path] == nil {
		r.received[req.URL.Path] = map[string]bool{}
	}
	r.received[req.URL.Path][env.ID] = true
}

// Accept makes /refuse take events from now on.
func (r *Receiver) Accept() { r.accept.Store(true) }

// Got reports whether path has accepted the event.
func (r *Receiver) Got(path, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.received[path][id]
}

// Close stops the receiver.
func (r *Receiver) Close() { _ = r.srv.Close() }

// Sinks are the scenario's two webhooks: every event to /flaky, VM.*
// events also to /refuse.
func (r *Receiver) Sinks() string {
	return `  - name: flaky
    type: webhook
    url: ` + r.URL + `/flaky
    retry: {initial: 200ms, max_interval: 1s}
  - name: refuser
    type: webhook
    url: ` + r.URL + `/refuse
    events: ["VM.*"]
    retry: {initial: 200ms, max_interval: 1s}
`
}

// Package ingest takes events over HTTP, for producers that do not link the
// Go library or run emit: Courier envelopes (one, an array, or NDJSON) and
// CloudEvents (structured, batched or binary mode). It answers only once
// the outbox acknowledged every event of the request, after fsync, exactly
// as emit does; where the outbox cannot take them it says 503 with
// Retry-After instead of spooling, since an HTTP producer can retry.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/bearer"
	"github.com/courierhq/courier/observability"
	"github.com/courierhq/courier/outbox"
)

// Options configure a Handler.
type Options struct {
	// Publisher stores the events; it groups the events of concurrent
	// requests and of one batch into few fsyncs.
	Publisher *outbox.Publisher
	// Tokens maps each accepted bearer token to the account its events
	// belong to ("" for none). Empty: every request is accepted.
	Tokens map[string]string
	// MaxBodyBytes caps a request's body.
	MaxBodyBytes int64
	// Timeout bounds the wait for the outbox's acknowledgements.
	Timeout time.Duration
	Meter   metric.MeterProvider // nil: no metrics
	Log     *slog.Logger
}

// Handler serves POST /v1/events.
type Handler struct {
	o       Options
	mux     *http.ServeMux
	metrics *metrics
	// served is mux behind a throttle that slows down addresses with
	// wrong tokens.
	served http.Handler
}

// New returns the ingest endpoint's handler.
func New(o Options) (*Handler, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(o.Meter)
	if err != nil {
		return nil, err
	}
	h := &Handler{o: o, mux: http.NewServeMux(), metrics: m}
	h.served = bearer.NewThrottle().Wrap(h.mux)
	h.mux.HandleFunc("POST /v1/events", h.post)
	h.mux.HandleFunc("/v1/events", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Allow", http.MethodPost)
		writeError(rw, http.StatusMethodNotAllowed, "POST events here")
	})
	h.mux.HandleFunc("/", func(rw http.ResponseWriter, _ *http.Request) {
		writeError(rw, http.StatusNotFound, "not found: POST events to /v1/events")
	})
	return h, nil
}

func (h *Handler) ServeHTTP(rw http.ResponseWriter, r *http.Request) { h.served.ServeHTTP(rw, r) }

// Result of one event.
const (
	resultStored    = "stored"
	resultDuplicate = "duplicate"
	resultInvalid   = "invalid"
	resultFailed    = "failed"
)

// Result is one event's outcome in a batch answer.
type Result struct {
	// Index is the event's position in the request, from 0.
	Index int `json:"index"`
	// Line is its line in an NDJSON body.
	Line   int    `json:"line,omitempty"`
	ID     string `json:"id,omitempty"`
	Result string `json:"result"`
	Reason string `json:"reason,omitempty"`
}

// BatchResponse answers a batch: counts, then each event in request order.
type BatchResponse struct {
	Stored     int      `json:"stored"`
	Duplicates int      `json:"duplicates"`
	Invalid    int      `json:"invalid"`
	Failed     int      `json:"failed"`
	Results    []Result `json:"results"`
}

// Response answers a single event.
type Response struct {
	ID     string `json:"id"`
	Result string `json:"result"`
}

func (h *Handler) post(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	outcome := h.serve(rw, r)
	h.metrics.request(r.Context(), outcome, time.Since(start))
}

// serve handles one request and returns its outcome for the metrics.
func (h *Handler) serve(rw http.ResponseWriter, r *http.Request) string {
	// The token is checked before a byte of the body is read: a caller
	// without one costs no more than its headers.
	account, ok := h.authenticate(r)
	if !ok {
		rw.Header().Set("WWW-Authenticate", `Bearer realm="courier-ingest"`)
		writeError(rw, http.StatusUnauthorized, "missing or wrong bearer token")
		return "unauthorized"
	}
	if !h.o.Publisher.Connected() {
		unavailable(rw, "the outbox is unreachable", 2)
		return "unavailable"
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, h.o.MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeError(rw, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes (ingest.max_body_bytes): send fewer events per request", h.o.MaxBodyBytes))
		return "too_large"
	case err != nil:
		writeError(rw, http.StatusBadRequest, "read body: "+err.Error())
		return "invalid"
	}
	req, err := decode(r, body)
	if err != nil {
		var re *requestError
		if !errors.As(err, &re) {
			re = &requestError{http.StatusBadRequest, err.Error()}
		}
		writeError(rw, re.status, re.msg)
		return outcomeOf(re.status)
	}
	if err := h.bind(r, &req, account); err != nil {
		var re *requestError
		errors.As(err, &re)
		writeError(rw, re.status, re.msg)
		return outcomeOf(re.status)
	}
	results := h.store(r, req)
	if !req.batch {
		return answerOne(rw, results[0])
	}
	return answerBatch(rw, results)
}

// authenticate finds the request's token among the configured ones, each
// compared in constant time, and returns its account.
func (h *Handler) authenticate(r *http.Request) (string, bool) {
	if len(h.o.Tokens) == 0 {
		return "", true
	}
	got, ok := bearer.FromRequest(r)
	if !ok {
		return "", false
	}
	account, found := "", false
	for token, acct := range h.o.Tokens {
		if bearer.Equal(got, token) {
			account, found = acct, true
		}
	}
	return account, found
}

// bind applies what the request says about its events: the token's
// account (an event of another account refuses the whole request, before
// anything is stored) and the Idempotency-Key of a single event.
func (h *Handler) bind(r *http.Request, req *request, account string) error {
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		if req.batch {
			return badRequest("Idempotency-Key names one event: give each event of a batch its own id instead")
		}
		env := &req.items[0].env
		if env.ID != "" && env.ID != key {
			return badRequest("Idempotency-Key %q and the event's id %q differ", key, env.ID)
		}
		env.ID = key
	}
	if account == "" {
		return nil
	}
	for i := range req.items {
		it := &req.items[i]
		switch it.env.Account {
		case "":
			it.env.Account = account
		case account:
		default:
			return &requestError{http.StatusForbidden, fmt.Sprintf("this token emits for account %s only; event %d is for account %s: nothing was stored", account, i, it.env.Account)}
		}
	}
	return nil
}

// outcome is one event's fate once the outbox answered.
type outcome struct {
	Result
	err error
}

// store emits every valid event at once, so the Publisher commits them
// together, and waits for each acknowledgement.
func (h *Handler) store(r *http.Request, req request) []outcome {
	ctx, cancel := context.WithTimeout(r.Context(), h.o.Timeout)
	defer cancel()
	// A traceparent header makes the emit spans children of the producer's
	// span: one trace from the HTTP producer to the delivery attempt.
	reqCtx := observability.Propagator().Extract(ctx, propagation.HeaderCarrier(r.Header))
	out := make([]outcome, len(req.items))
	pending := make([]*outbox.Pending, len(req.items))
	for i, it := range req.items {
		out[i].Index, out[i].Line = i, it.line
		if it.err != nil {
			out[i].Result.Result, out[i].Reason, out[i].err = resultInvalid, reason(it.err), it.err
			continue
		}
		emitCtx := reqCtx
		if it.parent.IsValid() {
			emitCtx = trace.ContextWithRemoteSpanContext(ctx, it.parent)
		}
		p, err := h.o.Publisher.EmitAsync(emitCtx, it.env)
		if err != nil {
			out[i].ID, out[i].err = it.env.ID, err
			out[i].Result.Result, out[i].Reason = resultFailed, reason(err)
			if errors.Is(err, event.ErrInvalid) || errors.Is(err, outbox.ErrTooLarge) {
				out[i].Result.Result = resultInvalid
			}
			continue
		}
		pending[i] = p
	}
	for i, p := range pending {
		if p == nil {
			continue
		}
		id, err := p.Wait(ctx)
		out[i].ID = id
		switch {
		case errors.Is(err, outbox.ErrTooLarge):
			// The outbox's own limit, below the Publisher's.
			out[i].Result.Result, out[i].Reason, out[i].err = resultInvalid, reason(err), err
		case err != nil:
			out[i].Result.Result, out[i].Reason, out[i].err = resultFailed, reason(err), err
		case p.Duplicate():
			out[i].Result.Result = resultDuplicate
		default:
			out[i].Result.Result = resultStored
		}
	}
	for _, o := range out {
		h.metrics.event(r.Context(), o.Result.Result)
	}
	return out
}

// reason is an error as a producer reads it: without the sentinel's prefix
// the result already says.
func reason(err error) string {
	return strings.TrimPrefix(err.Error(), event.ErrInvalid.Error()+": ")
}

// answerOne answers a request of one event with its own status.
func answerOne(rw http.ResponseWriter, o outcome) string {
	switch o.Result.Result {
	case resultStored, resultDuplicate:
		writeJSON(rw, http.StatusOK, Response{ID: o.ID, Result: o.Result.Result})
		return "ok"
	case resultInvalid:
		if errors.Is(o.err, outbox.ErrTooLarge) {
			writeError(rw, http.StatusRequestEntityTooLarge, o.Reason+" (outbox.max_event_size)")
			return "too_large"
		}
		writeError(rw, http.StatusBadRequest, o.Reason)
		return "invalid"
	}
	unavailable(rw, fmt.Sprintf("event %s was not stored: %s; send it again (with the same id, it is stored once)", o.ID, o.Reason), retryAfter(o.err))
	return "unavailable"
}

// answerBatch answers 200 with every event's result, or 503 when some
// could not be stored for the outbox's reasons: the producer sends the
// batch again, and the events with ids are stored once.
func answerBatch(rw http.ResponseWriter, out []outcome) string {
	resp := BatchResponse{Results: make([]Result, len(out))}
	wait := 0
	for i, o := range out {
		resp.Results[i] = o.Result
		switch o.Result.Result {
		case resultStored:
			resp.Stored++
		case resultDuplicate:
			resp.Duplicates++
		case resultInvalid:
			resp.Invalid++
		case resultFailed:
			resp.Failed++
			wait = max(wait, retryAfter(o.err))
		}
	}
	if resp.Failed > 0 {
		rw.Header().Set("Retry-After", strconv.Itoa(wait))
		writeJSON(rw, http.StatusServiceUnavailable, resp)
		return "unavailable"
	}
	writeJSON(rw, http.StatusOK, resp)
	return "ok"
}

// retryAfter is how many seconds a producer should wait: a full outbox
// drains over minutes, a lost leader or connection comes back in seconds.
func retryAfter(err error) int {
	if errors.Is(err, outbox.ErrFull) {
		return 30
	}
	return 2
}

func unavailable(rw http.ResponseWriter, msg string, seconds int) {
	rw.Header().Set("Retry-After", strconv.Itoa(seconds))
	writeError(rw, http.StatusServiceUnavailable, msg)
}

func outcomeOf(status int) string {
	switch status {
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusUnsupportedMediaType:
		return "unsupported"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	}
	return "invalid"
}

func writeError(rw http.ResponseWriter, status int, msg string) {
	writeJSON(rw, status, map[string]string{"error": msg})
}

func writeJSON(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	_ = json.NewEncoder(rw).Encode(v)
}

// metrics of the endpoint; every method is a no-op on nil.
type metrics struct {
	requests metric.Int64Counter
	events   metric.Int64Counter
	duration metric.Float64Histogram
}

func newMetrics(mp metric.MeterProvider) (*metrics, error) {
	if mp == nil {
		return nil, nil
	}
	m := mp.Meter("github.com/courierhq/courier/ingest")
	requests, err := m.Int64Counter("courier.ingest.requests", metric.WithDescription("Requests to the ingest endpoint, by outcome (ok, invalid, unauthorized, forbidden, too_large, unsupported, unavailable)."), metric.WithUnit("{request}"))
	if err != nil {
		return nil, fmt.Errorf("metric courier.ingest.requests: %w", err)
	}
	events, err := m.Int64Counter("courier.ingest.events", metric.WithDescription("Events posted to the ingest endpoint, by result (stored, duplicate, invalid, failed)."), metric.WithUnit("{event}"))
	if err != nil {
		return nil, fmt.Errorf("metric courier.ingest.events: %w", err)
	}
	duration, err := m.Float64Histogram("courier.ingest.duration", metric.WithDescription("Time from a request's arrival to its answer, the outbox's fsync included."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	if err != nil {
		return nil, fmt.Errorf("metric courier.ingest.duration: %w", err)
	}
	return &metrics{requests: requests, events: events, duration: duration}, nil
}

func (m *metrics) request(ctx context.Context, outcome string, took time.Duration) {
	if m == nil {
		return
	}
	attrs := metric.WithAttributes(attribute.String("outcome", outcome))
	m.requests.Add(ctx, 1, attrs)
	m.duration.Record(ctx, took.Seconds(), attrs)
}

func (m *metrics) event(ctx context.Context, result string) {
	if m == nil {
		return
	}
	m.events.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
}

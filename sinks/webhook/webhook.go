// Package webhook delivers events as HTTP POST requests, signed per the
// Standard Webhooks spec, with Gluster-style bearer tokens and Courier,
// Gluster or CloudEvents bodies.
package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/netguard"
	"github.com/courierhq/courier/observability"
	"github.com/courierhq/courier/retry"
	"github.com/courierhq/courier/sinks"
)

// excerptBytes caps the response excerpt kept for logs and dead letters.
const excerptBytes = 512

// Sink posts events to one URL.
type Sink struct {
	cfg       Config
	format    event.Format
	keys      [][]byte
	client    *http.Client
	userAgent string
	now       func() time.Time
	tracer    trace.Tracer // nil: no client spans
	spanURL   string       // the URL without credentials or query, for spans and errors
}

// Option adjusts a Sink.
type Option func(*options)

type options struct {
	tracer trace.TracerProvider
	guard  *netguard.Guard
}

// WithGuard dials under g's policy, which may change while the sink runs.
// Without it the sink reaches public addresses only.
func WithGuard(g *netguard.Guard) Option { return func(o *options) { o.guard = g } }

// WithTracerProvider records a client span per request (HTTP semantic
// conventions), below the delivery attempt's span.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracer = tp }
}

// New validates cfg and returns a sink ready to send. concurrency sizes the
// connection pool so parallel deliveries reuse connections.
func New(cfg Config, format event.Format, concurrency int, version string, opts ...Option) (*Sink, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("webhook sink: %w", err)
	}
	keys, _ := cfg.signingKeys() // validated above
	if o.guard == nil {
		o.guard = netguard.NewGuard(netguard.Policy{})
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Every connection's address is checked as dialled, after DNS: a
	// name resolving to a private address is refused like a literal one.
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: o.guard.Control}
	transport.DialContext = dialer.DialContext
	transport.MaxIdleConnsPerHost = max(concurrency, 2)
	transport.MaxIdleConns = max(concurrency, 2) * 2
	if cfg.InsecureSkipVerify {
		transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // opt-in for test setups, documented
	}
	var tracer trace.Tracer
	if o.tracer != nil {
		tracer = o.tracer.Tracer("github.com/courierhq/courier/sinks/webhook")
	}
	spanURL := redactURL(cfg.URL)
	return &Sink{
		tracer:  tracer,
		spanURL: spanURL,
		cfg:     cfg,
		format:  format,
		keys:    keys,
		client: &http.Client{
			Transport: transport,
			Timeout:   cfg.Timeout,
			// A redirect is the receiver's configuration problem; following it
			// would post events to a URL nobody configured.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		userAgent: "courier/" + version,
		now:       time.Now,
	}, nil
}

// Send posts e and classifies the outcome.
//
// With tracing on, the request is a client span (HTTP semantic
// conventions) whose context the receiver gets in traceparent. It is made
// here rather than by wrapping the transport (otelhttp), which wraps the
// request body and cost a quarter of the throughput in the end-to-end
// benchmark.
func (s *Sink) Send(ctx context.Context, e *event.Envelope) (err error) {
	status := 0
	ctx, finish := observability.SendSpan(ctx, s.tracer, http.MethodPost, trace.SpanKindClient,
		semconv.HTTPRequestMethodPost, semconv.URLFull(s.spanURL))
	defer func() {
		var extra []attribute.KeyValue
		if status != 0 {
			extra = append(extra, semconv.HTTPResponseStatusCode(status))
		}
		finish(err, extra...)
	}()
	req, err := s.request(ctx, e)
	if err != nil {
		return retry.NewPermanent(err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return retry.NewRetryable(fmt.Errorf("post %s: %w", s.spanURL, ctx.Err()))
		}
		// url.Error repeats the whole URL, query tokens included: name
		// the endpoint without its credentials instead.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		err = peerError(err)
		if errors.Is(err, netguard.ErrNotAllowed) {
			// Configuration, not a passing failure: retrying cannot help.
			return retry.NewPermanent(fmt.Errorf("post %s: %w", s.spanURL, err))
		}
		return retry.NewRetryable(fmt.Errorf("post %s: %w", s.spanURL, err))
	}
	defer resp.Body.Close()
	status = resp.StatusCode
	// Read (capped after decompression) so the connection can be reused.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, s.cfg.MaxResponseBytes))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	excerpt := Excerpt(body, excerptBytes)
	return &retry.Error{
		Kind:       retry.KindForHTTPStatus(resp.StatusCode),
		Status:     resp.StatusCode,
		RetryAfter: s.retryAfter(resp),
		Response:   excerpt,
		Err:        fmt.Errorf("webhook answered %s", resp.Status),
	}
}

func (s *Sink) retryAfter(resp *http.Response) time.Duration {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return 0
	}
	return retry.ParseRetryAfter(resp.Header.Get("Retry-After"), s.now())
}

func (s *Sink) request(ctx context.Context, e *event.Envelope) (*http.Request, error) {
	var (
		body []byte
		ct   string
		ce   map[string]string
		err  error
	)
	if s.format == event.FormatCloudEvents && s.cfg.CloudEventsMode == sinks.CloudEventsBinary {
		ce, body, ct = event.CloudEventsBinary(e)
	} else if body, ct, err = event.Encode(s.format, e); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	h := req.Header
	for k, v := range s.cfg.Headers {
		h.Set(k, v)
	}
	for k, v := range ce {
		h.Set("ce-"+k, percentEncode(v))
	}
	ts := s.now().Unix()
	h.Set("Content-Type", ct)
	h.Set("User-Agent", s.userAgent)
	h.Set("webhook-id", e.ID)
	h.Set("webhook-timestamp", fmt.Sprint(ts))
	if len(s.keys) > 0 {
		h.Set("webhook-signature", Sign(s.keys, e.ID, ts, body))
	}
	if s.cfg.BearerToken != "" {
		h.Set("Authorization", "Bearer "+s.cfg.BearerToken)
	}
	// The receiver joins the event's trace, below the client span when
	// tracing is on.
	observability.Propagator().Inject(ctx, propagation.HeaderCarrier(h))
	return req, nil
}

// Close drops idle connections.
func (s *Sink) Close(context.Context) error {
	s.client.CloseIdleConnections()
	return nil
}

// Excerpt is at most max bytes of a response body as text fit for a log
// line, a dead letter and a page: valid UTF-8, control characters other
// than newline and tab shown as '?', cut at a character boundary.
func Excerpt(body []byte, max int) string {
	text := strings.ToValidUTF8(string(body[:min(len(body), max+utf8.UTFMax)]), "?")
	text = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || !unicode.IsControl(r) {
			return r
		}
		return '?'
	}, text)
	if len(text) <= max {
		return text
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return text[:cut]
}

// peerError keeps what a peer that does not speak HTTP sent out of the
// error: Go quotes the start of a malformed response, which for a NATS
// port is its INFO line (server id, keys), and errors end up in attempts,
// dead letters and status.
func peerError(err error) error {
	if strings.Contains(err.Error(), "malformed HTTP") || strings.Contains(err.Error(), "HTTP/1.x transport connection broken") {
		return errors.New("the peer did not answer with HTTP")
	}
	return err
}

// percentEncode escapes a CloudEvents attribute for an HTTP header, as the
// HTTP binding requires: space, '"', '%' and every byte outside printable
// ASCII.
func percentEncode(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= 0x20 || c >= 0x7f || c == '"' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

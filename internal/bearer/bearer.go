// Package bearer reads bearer tokens (RFC 6750) from requests and slows
// down addresses that keep presenting wrong ones, for every HTTP endpoint
// of the worker that takes a token.
package bearer

import (
	"crypto/subtle"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// FromRequest returns the request's bearer token. The scheme is matched
// without regard to case, as RFC 7235 has it.
func FromRequest(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// Equal compares tokens in constant time.
func Equal(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// Require admits only the requests that carry token, answering the others
// 401 with a JSON error. With an empty token the endpoint is off: it
// answers 403 with off, which should say how to turn it on.
func Require(token, off string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if token == "" {
			replyError(w, http.StatusForbidden, off)
			return
		}
		if got, ok := FromRequest(req); !ok || !Equal(got, token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="courier"`)
			replyError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		next.ServeHTTP(w, req)
	})
}

func replyError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// Throttle limits how often one address may be told its token is wrong:
// after a burst of 401s, it gets 429 at once, without its token being
// looked at, until the allowance comes back (one a second).
type Throttle struct {
	mu    sync.Mutex
	byIP  map[string]*rate.Limiter
	every rate.Limit
	burst int
}

// Throttle defaults: 20 wrong tokens in a row, then one a second.
const (
	defaultBurst = 20
	maxTracked   = 10000
)

// NewThrottle returns a Throttle with the defaults.
func NewThrottle() *Throttle {
	return &Throttle{byIP: map[string]*rate.Limiter{}, every: rate.Every(time.Second), burst: defaultBurst}
}

// Wrap answers 429 to an address that has used up its wrong tokens, and
// counts every 401 next answers.
func (t *Throttle) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := clientIP(r)
		if wait := t.wait(ip); wait > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds()+0.999)))
			w.Header().Set("Connection", "close")
			http.Error(w, "too many requests with a wrong token from this address; wait and try again", http.StatusTooManyRequests)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == http.StatusUnauthorized {
			t.failed(ip)
		}
	})
}

func (t *Throttle) limiter(ip string) *rate.Limiter {
	l, ok := t.byIP[ip]
	if !ok {
		if len(t.byIP) >= maxTracked {
			// Many addresses at once: start over rather than grow.
			t.byIP = map[string]*rate.Limiter{}
		}
		l = rate.NewLimiter(t.every, t.burst)
		t.byIP[ip] = l
	}
	return l
}

// wait is how long ip must wait before its next try (0: now).
func (t *Throttle) wait(ip string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.byIP[ip]
	if !ok || l.Tokens() >= 1 {
		return 0
	}
	r := l.Reserve()
	d := r.Delay()
	r.Cancel()
	return d
}

func (t *Throttle) failed(ip string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.limiter(ip).Allow()
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	if code == http.StatusUnauthorized || code == http.StatusForbidden {
		// net/http waits for up to 256KiB of an unread body before it
		// answers on a connection it keeps; a refused caller's body is
		// not waited for, and its connection not kept.
		w.Header().Set("Connection", "close")
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes on to the writer below (server-sent events).
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

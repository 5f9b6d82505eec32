package console

import (
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

// Options adjust the console.
type Options struct {
	// Secure marks the session cookie Secure: set it when the console is
	// served over TLS (admin.tls).
	Secure bool
	// TraceURL links an event to its trace, with {trace_id} and
	// {event_id} replaced (admin.trace_url).
	TraceURL string
	Version  string
	Log      *slog.Logger
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

const (
	cookieName = "courier_session"
	// maxForm bounds a posted form: the largest is a selection of ids.
	maxForm = 1 << 20
	// deadLetterPage is how many dead letters a page lists.
	deadLetterPage = 500
)

// contentSecurityPolicy allows only the console's own script and style:
// no inline script, no other origin, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Console is the console's HTTP handler.
type Console struct {
	b        Backend
	opts     Options
	sessions *sessions
	pages    map[string]*template.Template
	mux      *http.ServeMux
}

// New returns the console over b, to be served at the root of the admin
// listener.
func New(b Backend, opts Options) (*Console, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	c := &Console{b: b, opts: opts, sessions: newSessions(opts.Now), pages: map[string]*template.Template{}, mux: http.NewServeMux()}
	names, err := fs.Glob(assets, "assets/page-*.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	for _, p := range names {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "assets/layout.html", p)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", p, err)
		}
		c.pages[strings.TrimSuffix(strings.TrimPrefix(p, "assets/page-"), ".html")] = t
	}
	static, err := fs.Sub(assets, "assets/static")
	if err != nil {
		return nil, fmt.Errorf("console assets: %w", err)
	}
	c.mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	c.mux.HandleFunc("GET /login", c.loginPage)
	c.mux.HandleFunc("POST /login", c.login)
	c.mux.HandleFunc("POST /logout", c.authed(false, c.logout))
	c.routes()
	return c, nil
}

// ServeHTTP answers one request with the security headers every answer
// carries.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	if !strings.HasPrefix(r.URL.Path, "/assets/") {
		h.Set("Cache-Control", "no-store")
	}
	c.mux.ServeHTTP(w, r)
}

// request is what a handler of a signed-in page gets.
type request struct {
	*http.Request
	w      http.ResponseWriter
	id     string // session id
	sess   session
	caller Caller
}

// authed wraps a handler that needs a session, and the admin when
// adminOnly. A page asked for without one leads to the sign-in; a post
// without one, or without the session's CSRF token, is refused.
func (c *Console) authed(adminOnly bool, fn func(*request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(cookieName)
		var sess session
		ok := err == nil
		if ok {
			sess, ok = c.sessions.get(ck.Value)
		}
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "not signed in (the session ended): sign in again", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
				return
			}
			if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(sess.csrf)) != 1 {
				http.Error(w, "the form is stale or was not sent by this console: reload the page and try again", http.StatusForbidden)
				return
			}
		}
		if adminOnly && !sess.caller.Admin() {
			http.Error(w, "an account token sees its account's events only", http.StatusForbidden)
			return
		}
		fn(&request{Request: r, w: w, id: ck.Value, sess: sess, caller: sess.caller})
	}
}

// page is what every template gets.
type page struct {
	Title  string
	Nav    string
	Caller Caller
	CSRF   string
	Flash  string
	Error  string
	// Field is the form field Error is about, shown next to it.
	Field   string
	Version string
	Data    any
}

func (c *Console) render(r *request, status int, name, title string, data any) {
	p := page{Title: title, Nav: name, Caller: r.caller, CSRF: r.sess.csrf, Version: c.opts.Version, Data: data}
	if q := r.URL.Query(); signed(r.sess.csrf, q.Get("done")+"\x00"+q.Get("failed"), q.Get("sig")) {
		p.Flash, p.Error, p.Field = q.Get("done"), q.Get("failed"), q.Get("field")
	}
	c.write(r.w, status, name, p)
}

func (c *Console) write(w http.ResponseWriter, status int, name string, p page) {
	t := c.pages[name]
	var buf strings.Builder
	if err := t.Execute(&buf, p); err != nil {
		c.opts.Log.Error("console: render", "page", name, "err", err)
		http.Error(w, "the page could not be shown: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(buf.String()))
}

// fail shows an error on its own page.
func (c *Console) fail(r *request, status int, err error) {
	p := page{Title: "Error", Caller: r.caller, CSRF: r.sess.csrf, Version: c.opts.Version, Error: err.Error()}
	c.write(r.w, status, "error", p)
}

// done redirects after an action to a page that says how it went. The
// message is one of the console's own, never taken from a link (a
// crafted link could otherwise put words in the console's mouth): the
// page shows it only when its signature matches.
func (c *Console) done(r *request, to, msg string, err error) {
	q := url.Values{}
	if err != nil {
		q.Set("failed", err.Error())
	} else {
		q.Set("done", msg)
	}
	q.Set("sig", sign(r.sess.csrf, q.Get("done")+"\x00"+q.Get("failed")))
	sep := "?"
	if strings.Contains(to, "?") {
		sep = "&"
	}
	http.Redirect(r.w, r.Request, to+sep+q.Encode(), http.StatusSeeOther)
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.write(w, http.StatusOK, "login", page{Title: "Sign in", Version: c.opts.Version, Data: safeNext(r.URL.Query().Get("next"))})
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	caller, ok := c.b.Authenticate(strings.TrimSpace(r.PostForm.Get("token")))
	if !ok {
		// 401 counts against the address in the admin listener's throttle.
		c.write(w, http.StatusUnauthorized, "login", page{Title: "Sign in", Version: c.opts.Version, Data: next,
			Error: "that token is not the admin token or an account token of this cluster"})
		return
	}
	id, _ := c.sessions.create(caller)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/", HttpOnly: true, Secure: c.opts.Secure,
		SameSite: http.SameSiteStrictMode, MaxAge: int(sessionIdle.Seconds())})
	if !caller.Admin() && (next == "/" || !strings.HasPrefix(next, "/events")) {
		next = "/events"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) logout(r *request) {
	c.sessions.end(r.id)
	http.SetCookie(r.w, &http.Cookie{Name: cookieName, Value: "", Path: "/", HttpOnly: true, Secure: c.opts.Secure, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(r.w, r.Request, "/login", http.StatusSeeOther)
}

// safeNext keeps a post-sign-in destination on this console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

// status maps a backend error to an HTTP status.
func status(err error) int {
	if errors.Is(err, ErrNotFound) {
		return http.StatusNotFound
	}
	return http.StatusBadGateway
}

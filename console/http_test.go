package console_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// client is a browser-like HTTP client with its own cookie jar that does
// not follow redirects, so each answer can be checked.
type client struct {
	t    *testing.T
	base string
	http *http.Client
}

func newClient(t *testing.T, base string) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: base, http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *client) do(method, path string, form url.Values) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (c *client) signIn(token string) *http.Response {
	c.t.Helper()
	resp, _ := c.do("POST", "/login", url.Values{"token": {token}})
	return resp
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (c *client) csrf(path string) string {
	c.t.Helper()
	_, page := c.do("GET", path, nil)
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		c.t.Fatalf("no CSRF token on %s", path)
	}
	return m[1]
}

// TestSignInSessionAndForms checks what a browser test cannot see well:
// the cookie's flags, the headers, CSRF, redirects that stay on the
// console, and that no page shows a secret.
func TestSignInSessionAndForms(t *testing.T) {
	s := startSite(t)
	ids := s.emit(t, 2, "VOLUME_CREATE", "acme")
	s.logged(t, ids)

	c := newClient(t, s.url)
	if resp, _ := c.do("GET", "/events", nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next=%2Fevents" {
		t.Errorf("signed out, /events answers %d to %q, want 303 to the sign-in", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := c.signIn("not-a-token"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a wrong token signs in with %d, want 401", resp.StatusCode)
	}
	resp := c.signIn(adminToken)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "courier_session" {
			cookie = ck
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Secure || strings.Contains(cookie.Value, adminToken) {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, not Secure over plain HTTP, no token in it", cookie)
	}
	page, body := c.do("GET", "/", nil)
	if page.StatusCode != http.StatusOK || !strings.Contains(body, "console-node") {
		t.Errorf("overview: %d\n%s", page.StatusCode, body)
	}
	if csp := page.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q", csp)
	}
	if page.Header.Get("Cache-Control") != "no-store" || page.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("headers %v", page.Header)
	}

	// A form without the session's CSRF token changes nothing.
	if resp, _ := c.do("POST", "/sinks/hook/disable", url.Values{"csrf": {"forged"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("disable with a forged CSRF token: %d, want 403", resp.StatusCode)
	}
	if resp, _ := newClient(t, s.url).do("POST", "/sinks/hook/disable", url.Values{"csrf": {"x"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("disable without a session: %d, want 401", resp.StatusCode)
	}
	if _, body := c.do("GET", "/sinks/hook", nil); !strings.Contains(body, "enabled") || strings.Contains(body, "disabled by") {
		t.Errorf("a refused form disabled the sink:\n%s", body)
	}

	// A message on a page comes from the console's own actions only.
	if _, body := c.do("GET", "/?done=Your+token+expired,+go+to+evil.example", nil); strings.Contains(body, "evil.example") {
		t.Error("the overview shows a message taken from its link")
	}
	csrf := c.csrf("/settings")
	resp, _ = c.do("POST", "/settings/concurrency", url.Values{"csrf": {csrf}, "value": {"5000"}})
	_, body = c.do("GET", resp.Header.Get("Location"), nil)
	if !regexp.MustCompile(`(?s)data-setting="concurrency">.*value="16".*field-error[^>]*>[^<]*want a whole number from 1 to 4096`).MatchString(body) {
		t.Errorf("a bad setting does not say why next to its field:\n%s", body)
	}

	// After sign-in the console keeps to its own pages.
	for _, next := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example"} {
		resp, _ := newClient(t, s.url).do("POST", "/login", url.Values{"token": {adminToken}, "next": {next}})
		if loc := resp.Header.Get("Location"); loc != "/" {
			t.Errorf("next=%q redirects to %q, want /", next, loc)
		}
	}

	// No page shows a credential.
	for _, p := range []string{"/", "/overview", "/sinks/hook", "/dead-letters", "/events", "/events/" + ids[0], "/settings"} {
		_, body := c.do("GET", p, nil)
		for _, secret := range []string{hookSecret, signingKey, adminToken, acmeToken} {
			if strings.Contains(body, secret) {
				t.Errorf("%s shows a secret", p)
			}
		}
	}

	// Signed out, the session is gone for good.
	resp, _ = c.do("POST", "/logout", url.Values{"csrf": {c.csrf("/")}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("sign-out: %d", resp.StatusCode)
	}
	old := newClient(t, s.url)
	u, _ := url.Parse(s.url)
	old.http.Jar.SetCookies(u, []*http.Cookie{{Name: "courier_session", Value: cookie.Value}})
	if resp, _ := old.do("GET", "/", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the signed-out session still opens the overview: %d", resp.StatusCode)
	}
}

// TestAccountSeesOnlyItsEvents: an account token reads and archives its
// account's events, and reaches no sink, dead letter or setting.
func TestAccountSeesOnlyItsEvents(t *testing.T) {
	s := startSite(t)
	mine := s.emit(t, 2, "VOLUME_CREATE", "acme")
	theirs := s.emit(t, 1, "VM_START", "globex")
	s.logged(t, append(mine, theirs...))

	c := newClient(t, s.url)
	if resp := c.signIn(acmeToken); resp.Header.Get("Location") != "/events" {
		t.Errorf("an account signs in to %q, want /events", resp.Header.Get("Location"))
	}
	_, body := c.do("GET", "/events", nil)
	if !strings.Contains(body, mine[0]) || !strings.Contains(body, mine[1]) || strings.Contains(body, theirs[0]) {
		t.Errorf("acme's event log page:\n%s", body)
	}
	if resp, _ := c.do("GET", "/events/"+theirs[0], nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("acme opens globex's event: %d, want 404", resp.StatusCode)
	}
	for _, p := range []string{"/overview", "/sinks/hook", "/dead-letters", "/settings"} {
		if resp, _ := c.do("GET", p, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("acme opens %s: %d, want 403", p, resp.StatusCode)
		}
	}
	if strings.Contains(body, `href="/settings"`) || strings.Contains(body, `href="/dead-letters"`) {
		t.Error("acme's navigation offers admin pages")
	}
	csrf := c.csrf("/events")
	resp, _ := c.do("POST", "/events/delete", url.Values{"csrf": {csrf}, "id": {theirs[0]}, "back": {"/events"}})
	if _, body := c.do("GET", resp.Header.Get("Location"), nil); !strings.Contains(body, "deleted 0 events") && !strings.Contains(body, "no event") {
		t.Errorf("acme deleting globex's event:\n%s", body)
	}
	if resp := s.node.EventLogDo(t.Context(), eventlogShow(theirs[0])); resp.Error != "" {
		t.Errorf("globex's event is gone after acme's delete: %s", resp.Error)
	}
}

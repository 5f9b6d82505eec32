package console_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
)

// browser starts Debian's Chromium, headless, for one test. A missing
// browser fails the test in CI and skips it elsewhere.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv("COURIER_CHROMIUM")
	if path == "" {
		var err error
		if path, err = exec.LookPath("chromium"); err != nil {
			testutil.Require(t, fmt.Errorf("the console's browser tests need chromium: %w", err))
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // root in a container has no user namespace sandbox
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.NoFirstRun,
		chromedp.WindowSize(1400, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// Every confirmation is accepted, as an operator who meant it would.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return ctx
}

// run runs browser actions, failing the test with what it was doing.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// text reads the text of the first element matching sel.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("read %s: %v", sel, err)
	}
	return s
}

// waitText waits, up to a deadline, until sel's text contains want.
func waitText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var s string
	for time.Now().Before(deadline) {
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		got, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
		s = got
		cancel()
		if err == nil && strings.Contains(s, want) {
			return
		}
		run(t, ctx, "pause", chromedp.Sleep(100*time.Millisecond)) // polling a page the test does not drive
	}
	t.Fatalf("%s never showed %q; last: %q", sel, want, s)
}

// waitLocation waits, up to a deadline, until the page's URL contains
// want: after a form is sent, the old page's elements are still there.
func waitLocation(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var loc string
	for time.Now().Before(deadline) {
		loc, _ = chromedp.Run(ctx, chromedp.Location())
		if strings.Contains(loc, want) {
			return
		}
		run(t, ctx, "pause", chromedp.Sleep(100*time.Millisecond)) // polling a navigation the test does not drive
	}
	t.Fatalf("the page never went to a URL with %q; last: %q", want, loc)
}

// screenshot saves the page under $COURIER_SCREENSHOTS, for the README.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("COURIER_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConsoleInABrowser walks the console as an on-call engineer would, in
// a real Chromium against a real worker: sign in, watch the overview
// update live, test and disable a sink, replay dead letters (one picked,
// then all matching a filter), search and open the event log, archive an
// event, change a setting; then an account sees its events only.
func TestConsoleInABrowser(t *testing.T) {
	s := startSite(t)
	ctx := browser(t)
	good := s.emit(t, 5, "VOLUME_CREATE", "acme")
	bad := s.emit(t, 3, "BAD", "globex")
	s.deadLetters(t, 3)
	s.logged(t, append(good, bad...))

	// Sign-in: a wrong token is told so; the admin token opens the overview.
	run(t, ctx, "open the console", chromedp.Navigate(s.url+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	screenshot(t, ctx, "console-login")
	run(t, ctx, "sign in with a wrong token",
		chromedp.SendKeys(chromedp.CSS("#token"), "wrong-token"), chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS(".flash.bad")))
	run(t, ctx, "sign in",
		chromedp.SendKeys(chromedp.CSS("#token"), adminToken), chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#sinks")))
	if got := text(t, ctx, `#nodes tr[data-node="console-node"]`); !strings.Contains(got, "UP") || !strings.Contains(got, "test") {
		t.Errorf("node row: %q", got)
	}
	row := `#sinks tr[data-sink="hook"]`
	if got := text(t, ctx, row); !strings.Contains(got, "webhook") || !strings.Contains(got, "enabled") || !strings.Contains(got, s.rcv.URL()) {
		t.Errorf("sink row: %q", got)
	}
	waitText(t, ctx, row+" .dead", "3")
	screenshot(t, ctx, "console-overview")

	// Live: a sink disabled from outside shows on the open page, unreloaded.
	states, err := outbox.OpenSinkStates(t.Context(), s.js)
	if err != nil {
		t.Fatal(err)
	}
	if err := states.Put(t.Context(), "hook", outbox.SinkState{Disabled: true, Reason: "disabled by an operator", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, row, "disabled: disabled by an operator")
	if err := states.Put(t.Context(), "hook", outbox.SinkState{Disabled: false, Reason: "enabled by an operator", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, row, "enabled")

	// The sink's page: definition without secrets, attempts, actions.
	run(t, ctx, "open the sink", chromedp.Click(chromedp.CSS(row+" a")), chromedp.WaitVisible(chromedp.CSS("#attempts")))
	def := text(t, ctx, "pre.definition")
	if strings.Contains(def, hookSecret) || strings.Contains(def, signingKey) || !strings.Contains(def, "[redacted]") {
		t.Errorf("definition shown as:\n%s", def)
	}
	if got := text(t, ctx, "#attempts tbody"); !strings.Contains(got, "delivered") || !strings.Contains(got, "dead_lettered") || !strings.Contains(got, "400") {
		t.Errorf("attempts: %q", got)
	}
	screenshot(t, ctx, "console-sink")
	run(t, ctx, "send a test event", chromedp.Click(chromedp.CSS("#test")))
	waitText(t, ctx, ".flash", "delivered in")
	testRequests := func() int {
		n := 0
		for _, d := range s.rcv.Requests() {
			if strings.Contains(string(d.Body), "COURIER_TEST") {
				n++
			}
		}
		return n
	}
	if testRequests() != 1 {
		t.Errorf("the receiver got %d test events, want 1", testRequests())
	}
	run(t, ctx, "disable", chromedp.Click(chromedp.CSS("#disable")), chromedp.WaitVisible(chromedp.CSS("#enable")))
	if st, err := states.Get(t.Context(), "hook"); err != nil || !st.Disabled {
		t.Errorf("after Disable the sink's state is %+v, %v", st, err)
	}
	run(t, ctx, "enable", chromedp.Click(chromedp.CSS("#enable")), chromedp.WaitVisible(chromedp.CSS("#disable")))
	if st, err := states.Get(t.Context(), "hook"); err != nil || st.Disabled {
		t.Errorf("after Enable the sink's state is %+v, %v", st, err)
	}

	// Dead letters: replay one picked, then all that match the filter.
	run(t, ctx, "open dead letters", chromedp.Navigate(s.url+"/dead-letters?sink=hook&type=BAD"), chromedp.WaitVisible(chromedp.CSS("#dead-letters")))
	if got := text(t, ctx, "#dl-count"); !strings.HasPrefix(got, "3 of 3") {
		t.Errorf("count: %q", got)
	}
	screenshot(t, ctx, "console-dead-letters")
	s.refuse.Store(false)
	run(t, ctx, "replay one", chromedp.Click(chromedp.CSS(`input[value="`+bad[0]+`"]`)), chromedp.Click(chromedp.CSS("#replay-selected")))
	waitText(t, ctx, ".flash", "replayed 1 dead letters to sink hook")
	waitText(t, ctx, "#dl-count", "2 of 2")
	run(t, ctx, "replay all matching", chromedp.Click(chromedp.CSS("#replay-all")))
	waitText(t, ctx, ".flash", "replayed 2 dead letters to sink hook")
	s.deadLetters(t, 0)
	s.logged(t, bad)
	for _, id := range bad {
		if s.rcv.Seen(id) != 2 {
			t.Errorf("the receiver got dead letter %s %d times, want 2 (refused, then replayed)", id, s.rcv.Seen(id))
		}
	}

	// The event log: search, open one, follow its trace link, archive it.
	run(t, ctx, "search the log", chromedp.Navigate(s.url+"/events"), chromedp.WaitVisible(chromedp.CSS("#events")),
		chromedp.SendKeys(chromedp.CSS(`input[name="type"]`), "VOLUME_*"), chromedp.Submit(chromedp.CSS(`input[name="type"]`)))
	waitText(t, ctx, "h1", "Event log")
	waitLocation(t, ctx, "type=VOLUME_*")
	if got := text(t, ctx, "#events tbody"); strings.Contains(got, "BAD") || strings.Count(got, "VOLUME_CREATE") != 5 {
		t.Errorf("search VOLUME_*: %q", got)
	}
	screenshot(t, ctx, "console-events")
	run(t, ctx, "open an event", chromedp.Navigate(s.url+"/events?type=BAD"), chromedp.Click(chromedp.CSS(`tr[data-event="`+bad[0]+`"] a`)),
		chromedp.WaitVisible(chromedp.CSS("#event-id")))
	if t.Failed() {
		return
	}
	if got := text(t, ctx, "#attempts tbody"); !strings.Contains(got, "dead_lettered") || !strings.Contains(got, "delivered") {
		t.Errorf("attempts of a replayed event: %q", got)
	}
	link, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("trace"), "href"))
	if err != nil {
		t.Fatal(err)
	}
	if want := traceURLBase + traced.TraceID().String() + "?event=" + bad[0]; link.Value != want {
		t.Errorf("trace link %q, want %q", link.Value, want)
	}
	screenshot(t, ctx, "console-event")
	run(t, ctx, "archive one", chromedp.Navigate(s.url+"/events?type=VOLUME_CREATE"), chromedp.WaitVisible(chromedp.CSS("#events")),
		chromedp.Click(chromedp.CSS(`input[value="`+good[0]+`"]`)), chromedp.Click(chromedp.CSS("#archive")))
	waitText(t, ctx, ".flash", "archived 1 events")
	if got := text(t, ctx, "#events tbody"); strings.Contains(got, good[0]) || strings.Count(got, "VOLUME_CREATE") != 4 {
		t.Errorf("the archived event is still listed: %q", got)
	}

	// Settings: set one, see it set, reset it.
	run(t, ctx, "set concurrency", chromedp.Navigate(s.url+"/settings"), chromedp.WaitVisible(chromedp.CSS("#settings")),
		chromedp.SetValue(chromedp.CSS(`tr[data-setting="concurrency"] input[name="value"]`), "4"),
		chromedp.Submit(chromedp.CSS(`tr[data-setting="concurrency"] input[name="value"]`)))
	waitText(t, ctx, ".flash", "concurrency set to 4 on every node")
	if got := text(t, ctx, `tr[data-setting="concurrency"] td`); !strings.Contains(got, "set") {
		t.Errorf("concurrency row after set: %q", got)
	}
	screenshot(t, ctx, "console-settings")
	run(t, ctx, "reset concurrency", chromedp.Click(chromedp.CSS(`tr[data-setting="concurrency"] form[action$="/reset"] button`)))
	waitText(t, ctx, ".flash", "concurrency reset")

	// What an event carries is shown as text: markup in it runs nothing.
	hostile, err := s.pub.Emit(t.Context(), event.Envelope{Type: "VM.START", Account: "acme",
		Description: `<img src=x onerror="window.pwned='description'"><script>window.pwned='description'</script>`,
		Data:        []byte(`{"html":"<script>window.pwned='data'</script><img src=x onerror=\"window.pwned='data'\">"}`)})
	if err != nil {
		t.Fatal(err)
	}
	s.logged(t, []string{hostile})
	for _, p := range []string{"/events?type=VM.START", "/events/" + hostile} {
		run(t, ctx, "open "+p, chromedp.Navigate(s.url+p), chromedp.WaitVisible(chromedp.CSS("main h1")))
		pwned, err := chromedp.Run(ctx, chromedp.Evaluate[string](`String(window.pwned)`))
		if err != nil || pwned != "undefined" {
			t.Errorf("%s ran the event's markup: window.pwned = %q, %v", p, pwned, err)
		}
		if got := text(t, ctx, "main"); !strings.Contains(got, "<img src=x onerror=") {
			t.Errorf("%s does not show the markup as text: %q", p, got)
		}
	}

	// Sign out; an account sees its own events only.
	run(t, ctx, "sign out", chromedp.Click(chromedp.CSS(".who button")), chromedp.WaitVisible(chromedp.CSS("#token")))
	run(t, ctx, "sign in as acme",
		chromedp.SendKeys(chromedp.CSS("#token"), acmeToken), chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#events")))
	if got := text(t, ctx, "#events tbody"); strings.Contains(got, "BAD") || strings.Count(got, "VOLUME_CREATE") != 4 || !strings.Contains(got, "VM.START") {
		t.Errorf("acme's events: %q", got)
	}
	if got := text(t, ctx, "header nav"); strings.Contains(got, "Settings") || strings.Contains(got, "Overview") {
		t.Errorf("acme's navigation: %q", got)
	}
}

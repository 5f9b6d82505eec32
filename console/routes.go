package console

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/courierhq/courier/eventlog"
	"github.com/courierhq/courier/outbox"
)

func (c *Console) routes() {
	m := c.mux
	m.HandleFunc("GET /{$}", c.authed(false, c.overviewPage))
	m.HandleFunc("GET /overview", c.authed(true, c.overviewFragment))
	m.HandleFunc("GET /sinks/{name}", c.authed(true, c.sinkPage))
	m.HandleFunc("POST /sinks/{name}/test", c.authed(true, c.testSink))
	m.HandleFunc("POST /sinks/{name}/disable", c.authed(true, func(r *request) { c.setDisabled(r, true) }))
	m.HandleFunc("POST /sinks/{name}/enable", c.authed(true, func(r *request) { c.setDisabled(r, false) }))
	m.HandleFunc("GET /dead-letters", c.authed(true, c.deadLettersPage))
	m.HandleFunc("POST /dead-letters/replay", c.authed(true, c.replay))
	m.HandleFunc("GET /events", c.authed(false, c.eventsPage))
	m.HandleFunc("GET /events/{id}", c.authed(false, c.eventPage))
	m.HandleFunc("POST /events/archive", c.authed(false, func(r *request) { c.changeEvents(r, eventlog.OpArchive) }))
	m.HandleFunc("POST /events/delete", c.authed(false, func(r *request) { c.changeEvents(r, eventlog.OpDelete) }))
	m.HandleFunc("GET /settings", c.authed(true, c.settingsPage))
	m.HandleFunc("POST /settings/{name}", c.authed(true, c.setSetting))
	m.HandleFunc("POST /settings/{name}/reset", c.authed(true, c.resetSetting))
}

func (c *Console) overviewPage(r *request) {
	if !r.caller.Admin() {
		http.Redirect(r.w, r.Request, "/events", http.StatusSeeOther)
		return
	}
	ov, err := c.b.Overview(r.Context())
	if err != nil {
		c.fail(r, status(err), err)
		return
	}
	c.render(r, http.StatusOK, "overview", "Overview", ov)
}

// overviewFragment is the overview's live part, which the page's script
// fetches every few seconds and swaps in.
func (c *Console) overviewFragment(r *request) {
	ov, err := c.b.Overview(r.Context())
	if err != nil {
		http.Error(r.w, err.Error(), status(err))
		return
	}
	r.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := c.pages["overview"].ExecuteTemplate(r.w, "live", page{Caller: r.caller, Data: ov}); err != nil {
		c.opts.Log.Error("console: render overview", "err", err)
	}
}

func (c *Console) sinkPage(r *request) {
	sp, err := c.b.Sink(r.Context(), r.PathValue("name"))
	if err != nil {
		c.fail(r, status(err), err)
		return
	}
	c.render(r, http.StatusOK, "sink", "Sink "+sp.Name, sp)
}

func (c *Console) testSink(r *request) {
	name := r.PathValue("name")
	to := "/sinks/" + url.PathEscape(name)
	res, err := c.b.TestSink(r.Context(), name)
	switch {
	case err != nil:
		c.done(r, to, "", err)
	case res.Error != "":
		c.done(r, to, "", fmt.Errorf("the test event was refused (%s, after %s): %s", res.Kind, res.Took.Round(time.Millisecond), res.Error))
	default:
		c.done(r, to, fmt.Sprintf("test event %s delivered in %s", res.EventID, res.Took.Round(time.Millisecond)), nil)
	}
}

func (c *Console) setDisabled(r *request, disabled bool) {
	name := r.PathValue("name")
	err := c.b.SetSinkDisabled(r.Context(), name, disabled)
	word := map[bool]string{true: "disabled", false: "enabled"}[disabled]
	c.done(r, "/sinks/"+url.PathEscape(name), "sink "+name+" "+word+" on every node", err)
}

// deadLetterFilter is the dead letters page's filter: the sink, and
// optionally the event type and when they were dead-lettered.
type deadLetterFilter struct {
	Sink, Type   string
	From, To     string // as typed
	from, to     time.Time
	Sinks        []string
	Matching     []outbox.DeadLetter
	Total, Shown int
}

func parseDeadLetterFilter(form url.Values, now time.Time) (deadLetterFilter, error) {
	f := deadLetterFilter{Sink: form.Get("sink"), Type: strings.TrimSpace(form.Get("type")), From: form.Get("from"), To: form.Get("to")}
	var err error
	if f.from, err = eventlog.ParseTime(f.From, false, now); err != nil {
		return f, fmt.Errorf("from: %w", err)
	}
	if f.to, err = eventlog.ParseTime(f.To, true, now); err != nil {
		return f, fmt.Errorf("to: %w", err)
	}
	return f, nil
}

func (f *deadLetterFilter) matches(dl outbox.DeadLetter) bool {
	return (f.Type == "" || dl.Event.Type == f.Type) &&
		(f.from.IsZero() || !dl.DeadAt.Before(f.from)) &&
		(f.to.IsZero() || !dl.DeadAt.After(f.to))
}

// filtered reports whether the filter leaves any dead letter out.
func (f *deadLetterFilter) filtered() bool { return f.Type != "" || !f.from.IsZero() || !f.to.IsZero() }

func (c *Console) deadLettersPage(r *request) {
	f, err := parseDeadLetterFilter(r.URL.Query(), c.opts.Now())
	if err != nil {
		c.fail(r, http.StatusBadRequest, err)
		return
	}
	ov, err := c.b.Overview(r.Context())
	if err != nil {
		c.fail(r, status(err), err)
		return
	}
	for _, s := range ov.Sinks {
		f.Sinks = append(f.Sinks, s.Name)
	}
	if f.Sink == "" && len(ov.Sinks) > 0 {
		// The first sink with dead letters, or the first sink.
		f.Sink = ov.Sinks[0].Name
		if i := slices.IndexFunc(ov.Sinks, func(s Sink) bool { return s.DeadLetters > 0 }); i >= 0 {
			f.Sink = ov.Sinks[i].Name
		}
	}
	if f.Sink != "" {
		all, err := c.b.DeadLetters(r.Context(), f.Sink)
		if err != nil {
			c.fail(r, status(err), err)
			return
		}
		f.Total = len(all)
		for _, dl := range all {
			if f.matches(dl) {
				f.Matching = append(f.Matching, dl)
			}
		}
		f.Shown = len(f.Matching)
		if f.Shown > deadLetterPage {
			f.Matching, f.Shown = f.Matching[:deadLetterPage], deadLetterPage
		}
	}
	c.render(r, http.StatusOK, "deadletters", "Dead letters", f)
}

// replay replays the selected dead letters, or all that match the filter.
func (c *Console) replay(r *request) {
	f, err := parseDeadLetterFilter(r.PostForm, c.opts.Now())
	back := "/dead-letters?" + url.Values{"sink": {f.Sink}, "type": {f.Type}, "from": {f.From}, "to": {f.To}}.Encode()
	if err != nil {
		c.done(r, back, "", err)
		return
	}
	if f.Sink == "" {
		c.done(r, back, "", fmt.Errorf("no sink given"))
		return
	}
	ids := r.PostForm["id"]
	all := r.PostForm.Get("all") == "1"
	switch {
	case all && f.filtered():
		dls, err := c.b.DeadLetters(r.Context(), f.Sink)
		if err != nil {
			c.done(r, back, "", err)
			return
		}
		ids = ids[:0]
		for _, dl := range dls {
			if f.matches(dl) {
				ids = append(ids, dl.Event.ID)
			}
		}
		if len(ids) == 0 {
			c.done(r, back, "no dead letter matches the filter: nothing replayed", nil)
			return
		}
	case all:
		ids = nil // every dead letter of the sink
	case len(ids) == 0:
		c.done(r, back, "", fmt.Errorf("select the dead letters to replay, or replay all that match"))
		return
	}
	n, err := c.b.Replay(r.Context(), f.Sink, ids)
	msg := fmt.Sprintf("replayed %d dead letters to sink %s", n, f.Sink)
	if err != nil {
		err = fmt.Errorf("%s, then: %w", msg, err)
	}
	c.done(r, back, msg, err)
}

// eventsView is the event log page.
type eventsView struct {
	Query    url.Values
	Events   []eventlog.Event
	Page     int
	Prev     string
	Next     string
	PageSize int
}

func (c *Console) eventsPage(r *request) {
	q := nonEmpty(r.URL.Query())
	for _, k := range flashParams {
		q.Del(k)
	}
	f, err := eventlog.ParseFilter(q, c.opts.Now())
	if err != nil {
		c.fail(r, http.StatusBadRequest, err)
		return
	}
	if f.PageSize == 0 {
		f.PageSize = 50
	}
	resp := c.b.EventLog(r.Context(), eventlog.Request{Op: eventlog.OpList, Filter: f, Account: r.caller.Account})
	if resp.Error != "" {
		c.fail(r, http.StatusBadGateway, fmt.Errorf("%s", resp.Error))
		return
	}
	v := eventsView{Query: q, Events: resp.Events, Page: max(f.Page, 1), PageSize: f.PageSize}
	link := func(page int) string {
		l := url.Values{}
		for k, vs := range q {
			l[k] = vs
		}
		l.Set("page", fmt.Sprint(page))
		return "/events?" + l.Encode()
	}
	if v.Page > 1 {
		v.Prev = link(v.Page - 1)
	}
	if len(resp.Events) == f.PageSize {
		v.Next = link(v.Page + 1)
	}
	c.render(r, http.StatusOK, "events", "Event log", v)
}

// eventView is one event's page.
type eventView struct {
	Event    eventlog.Event
	Attempts []eventlog.Attempt
	TraceURL string
}

func (c *Console) eventPage(r *request) {
	resp := c.b.EventLog(r.Context(), eventlog.Request{Op: eventlog.OpShow, ID: r.PathValue("id"), Account: r.caller.Account})
	switch {
	case resp.NotFound:
		c.fail(r, http.StatusNotFound, fmt.Errorf("no event %s in the event log", r.PathValue("id")))
		return
	case resp.Error != "":
		c.fail(r, http.StatusBadGateway, fmt.Errorf("%s", resp.Error))
		return
	}
	v := eventView{Event: *resp.Event, Attempts: resp.Attempts}
	v.TraceURL = traceLink(c.opts.TraceURL, resp.Event)
	c.render(r, http.StatusOK, "event", "Event "+resp.Event.ID, v)
}

// traceLink fills in the trace URL template; none when it needs a trace id
// the event does not have.
func traceLink(tmpl string, e *eventlog.Event) string {
	if tmpl == "" || (strings.Contains(tmpl, "{trace_id}") && e.TraceID == "") {
		return ""
	}
	return strings.NewReplacer("{event_id}", url.QueryEscape(e.ID), "{trace_id}", url.QueryEscape(e.TraceID)).Replace(tmpl)
}

// changeEvents archives or deletes the selected events.
func (c *Console) changeEvents(r *request, op string) {
	back := safeNext(r.PostForm.Get("back"))
	if !strings.HasPrefix(back, "/events") {
		back = "/events"
	}
	ids := r.PostForm["id"]
	if len(ids) == 0 {
		c.done(r, back, "", fmt.Errorf("select the events to %s", op))
		return
	}
	resp := c.b.EventLog(r.Context(), eventlog.Request{Op: op, Selection: eventlog.Selection{IDs: ids}, Account: r.caller.Account})
	if resp.Error != "" {
		c.done(r, back, "", fmt.Errorf("%s", resp.Error))
		return
	}
	verb := map[string]string{eventlog.OpArchive: "archived", eventlog.OpDelete: "deleted"}[op]
	c.done(r, back, fmt.Sprintf("%s %d events", verb, resp.Count), nil)
}

func (c *Console) settingsPage(r *request) {
	list, err := c.b.Settings(r.Context())
	if err != nil {
		c.fail(r, status(err), err)
		return
	}
	c.render(r, http.StatusOK, "settings", "Settings", list)
}

func (c *Console) setSetting(r *request) {
	name := r.PathValue("name")
	value := strings.TrimSpace(r.PostForm.Get("value"))
	err := c.b.SetSetting(r.Context(), name, value)
	c.done(r, "/settings?"+url.Values{"field": {name}}.Encode(), name+" set to "+value+" on every node", err)
}

func (c *Console) resetSetting(r *request) {
	name := r.PathValue("name")
	err := c.b.ResetSetting(r.Context(), name)
	c.done(r, "/settings", name+" reset to the configuration's value", err)
}

// flashParams are the parameters done adds to a page's link.
var flashParams = []string{"done", "failed", "sig"}

// nonEmpty drops the empty fields a submitted filter form carries.
func nonEmpty(q url.Values) url.Values {
	out := url.Values{}
	for k, vs := range q {
		for _, v := range vs {
			if v = strings.TrimSpace(v); v != "" {
				out.Add(k, v)
			}
		}
	}
	return out
}

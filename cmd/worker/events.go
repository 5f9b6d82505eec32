package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/courierhq/courier/eventlog"
	"github.com/courierhq/courier/worker"
)

const eventsUsage = "usage: worker events list|show ID|attempts ID|archive|delete [flags] (worker events list --help)"

// flagParams maps flags onto the admin API's query parameters, so both
// are read by one parser (eventlog.ParseFilter, ParseSelection).
type flagParams struct {
	fs     *pflag.FlagSet
	values map[string]*string
}

func (p *flagParams) str(flagName, param, usage string) {
	p.values[param] = p.fs.String(flagName, "", usage)
}

func (p *flagParams) query() url.Values {
	q := url.Values{}
	for param, v := range p.values {
		if *v != "" {
			q.Set(param, *v)
		}
	}
	return q
}

func eventsListCmd(stdout io.Writer) *cobra.Command {
	c, cfgPath := leaf("list", "the event log, newest first")
	fs := c.Flags()
	p := &flagParams{fs: fs, values: map[string]*string{}}
	p.str("type", "type", "event type, a glob (VOLUME.*)")
	p.str("level", "level", "INFO, WARN or ERROR")
	p.str("state", "state", "Created, Scheduled, Started or Completed")
	p.str("start-id", "startid", "the event with this id and every event linked to it")
	p.str("account", "account", "account")
	p.str("domain", "domain", "domain")
	p.str("resource-id", "resourceid", "resource id")
	p.str("keyword", "keyword", "word in the type, description or data")
	p.str("start-date", "startdate", "from this date or time (2026-11-01[T10:00:00], UTC)")
	p.str("end-date", "enddate", "up to this date or time, inclusive")
	since := fs.String("since", "", "from this long ago (2h), or a date")
	until := fs.String("until", "", "up to this long ago, or a date")
	archived := fs.Bool("archived", false, "list archived events instead")
	limit := fs.Int("limit", eventlog.DefaultPageSize, "events per page")
	page := fs.Int("page", 1, "page, from 1")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	c.RunE = func(c *cobra.Command, args []string) error {
		ctx := c.Context()
		if len(args) > 0 {
			return usageError{"usage: worker events list [--config FILE] [filters] (no arguments)"}
		}
		q := p.query()
		for flagName, v := range map[string]string{"startdate": *since, "enddate": *until} {
			if v == "" {
				continue
			}
			if q.Has(flagName) {
				return usageError{"worker events list: give --since or --start-date, --until or --end-date, not both"}
			}
			q.Set(flagName, v)
		}
		if *archived {
			q.Set("archived", "true")
		}
		q.Set("page", fmt.Sprint(*page))
		q.Set("pagesize", fmt.Sprint(*limit))
		f, err := eventlog.ParseFilter(q, time.Now())
		if err != nil {
			return usageError{"worker events list: " + err.Error()}
		}
		resp, err := askEventLog(ctx, *cfgPath, eventlog.Request{Op: eventlog.OpList, Filter: f})
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSONLines(stdout, resp.Events)
		}
		if len(resp.Events) == 0 {
			fmt.Fprintln(stdout, "no events")
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tID\tTYPE\tLEVEL\tSTATE\tACCOUNT\tDESCRIPTION\tDELIVERIES")
		for _, e := range resp.Events {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Format(time.RFC3339), e.ID, e.Type, e.Level, e.State, e.Account,
				shorten(e.Description, 60), deliveriesText(e.Deliveries))
		}
		return tw.Flush()
	}
	return c
}

func eventsShowCmd(stdout io.Writer, attemptsOnly bool) *cobra.Command {
	command, short := "show", "one event, its delivery state per sink and every attempt"
	if attemptsOnly {
		command, short = "attempts", "every delivery attempt of one event, on every sink and node"
	}
	c, cfgPath := leaf(command+" ID", short)
	asJSON := c.Flags().Bool("json", false, "print JSON")
	c.RunE = func(c *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usageError{fmt.Sprintf("usage: worker events %s [--config FILE] [--json] ID", command)}
		}
		return showEvent(c.Context(), *cfgPath, args[0], *asJSON, attemptsOnly, stdout)
	}
	return c
}

func showEvent(ctx context.Context, cfgPath, id string, asJSON, attemptsOnly bool, stdout io.Writer) error {
	resp, err := askEventLog(ctx, cfgPath, eventlog.Request{Op: eventlog.OpShow, ID: id})
	if err != nil {
		return err
	}
	if attemptsOnly {
		if asJSON {
			return printJSONLines(stdout, resp.Attempts)
		}
		return printAttempts(stdout, id, resp.Attempts)
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"event": resp.Event, "attempts": resp.Attempts})
	}
	e := resp.Event
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, row := range [][2]string{
		{"id", e.ID}, {"type", e.Type}, {"time", e.Time.Format(time.RFC3339Nano)}, {"level", string(e.Level)}, {"state", string(e.State)},
		{"start_id", e.StartID}, {"description", e.Description}, {"account", e.Account}, {"domain", e.Domain}, {"user", e.User},
		{"resource", strings.TrimSpace(e.ResourceType + " " + e.ResourceID)}, {"source", e.Source}, {"node", e.Node}, {"key", e.Key},
		{"archived", fmt.Sprint(e.Archived)}, {"data", string(e.Data)}, {"deliveries", deliveriesText(e.Deliveries)},
	} {
		if row[1] != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	return printAttempts(stdout, e.ID, resp.Attempts)
}

func printAttempts(stdout io.Writer, id string, list []eventlog.Attempt) error {
	if len(list) == 0 {
		fmt.Fprintf(stdout, "no attempts logged for %s\n", id)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tSINK\tATTEMPT\tOUTCOME\tSTATUS\tDURATION\tNODE\tERROR")
	for _, a := range list {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\n", a.At.Format(time.RFC3339Nano), a.Sink, a.Number, a.Outcome, a.Status, a.Duration.Round(time.Microsecond), a.Node, a.Error)
	}
	return tw.Flush()
}

func eventsChangeCmd(op string, stdout io.Writer) *cobra.Command {
	short := map[string]string{eventlog.OpArchive: "archive events (kept, hidden from lists unless --archived)",
		eventlog.OpDelete: "delete events from the log"}[op]
	c, cfgPath := leaf(op+" [ID...]", short+": by --id ID..., or --type GLOB and/or --end-date D [--start-date D]")
	fs := c.Flags()
	idFlag := fs.StringArray("id", nil, "event id (repeat, or comma-separated)")
	p := &flagParams{fs: fs, values: map[string]*string{}}
	p.str("type", "type", "event type, a glob")
	p.str("start-date", "startdate", "from this date (inclusive); needs --end-date")
	p.str("end-date", "enddate", "up to this date (inclusive)")
	c.RunE = func(c *cobra.Command, args []string) error {
		return changeEvents(c.Context(), op, *cfgPath, append(*idFlag, args...), p, stdout)
	}
	return c
}

func changeEvents(ctx context.Context, op, cfgPath string, ids []string, p *flagParams, stdout io.Writer) error {
	q := p.query()
	for _, id := range ids {
		q.Add("id", id)
	}
	sel, err := eventlog.ParseSelection(q, time.Now())
	if err != nil {
		return usageError{fmt.Sprintf("worker events %s: %v (give --id ID..., or --type GLOB and/or --end-date D with an optional --start-date D)", op, err)}
	}
	resp, err := askEventLog(ctx, cfgPath, eventlog.Request{Op: op, Selection: sel})
	if err != nil {
		return err
	}
	past := map[string]string{eventlog.OpArchive: "archived", eventlog.OpDelete: "deleted"}[op]
	fmt.Fprintf(stdout, "%d events %s\n", resp.Count, past)
	return nil
}

// askEventLog sends a request to the nearest worker over the outbox
// connection; the CLI never opens data_dir.
func askEventLog(ctx context.Context, cfgPath string, req eventlog.Request) (eventlog.Response, error) {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return eventlog.Response{}, err
	}
	nc, err := connectOutbox(ctx, cfg)
	if err != nil {
		return eventlog.Response{}, err
	}
	defer nc.Close()
	data, err := json.Marshal(&req)
	if err != nil {
		return eventlog.Response{}, fmt.Errorf("encode request: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, worker.EventLogSubject, data)
	if errors.Is(err, nats.ErrNoResponders) {
		return eventlog.Response{}, errors.New("no worker answers event log requests: is a worker running, with the event log on (event_log.enabled)?")
	}
	if err != nil {
		return eventlog.Response{}, fmt.Errorf("ask the event log: %w", err)
	}
	var resp eventlog.Response
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return eventlog.Response{}, fmt.Errorf("read the event log's answer: %w", err)
	}
	switch {
	case resp.BadRequest:
		return resp, usageError{resp.Error}
	case resp.Error != "":
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

func deliveriesText(ds map[string]eventlog.Delivery) string {
	names := make([]string, 0, len(ds))
	for n := range ds {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		d := ds[n]
		s := n + ":" + d.State
		if d.Attempts > 1 {
			s += fmt.Sprintf("(%d)", d.Attempts)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func shorten(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

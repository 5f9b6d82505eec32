package eventlog

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/courierhq/courier/event"
)

// FilterParams are the query parameters of GET /v1/events, CloudStack's
// listEvents names; the CLI's flags map onto them.
var FilterParams = []string{"type", "level", "state", "startid", "account", "domain", "resourceid", "keyword", "startdate", "enddate", "archived", "page", "pagesize"}

// SelectionParams are the parameters of archive and delete.
var SelectionParams = []string{"id", "type", "startdate", "enddate"}

// ParseFilter reads a filter from query parameters. An unknown parameter
// or a bad value is an error wrapping ErrBadFilter.
func ParseFilter(q url.Values, now time.Time) (Filter, error) {
	if err := known(q, FilterParams); err != nil {
		return Filter{}, err
	}
	f := Filter{
		Type: q.Get("type"), Level: event.Level(strings.ToUpper(q.Get("level"))), State: event.State(q.Get("state")),
		StartID: q.Get("startid"), Account: q.Get("account"), Domain: q.Get("domain"),
		ResourceID: q.Get("resourceid"), Keyword: q.Get("keyword"),
	}
	var err error
	if f.Start, err = ParseTime(q.Get("startdate"), false, now); err != nil {
		return Filter{}, fmt.Errorf("startdate: %w", err)
	}
	if f.End, err = ParseTime(q.Get("enddate"), true, now); err != nil {
		return Filter{}, fmt.Errorf("enddate: %w", err)
	}
	if v := q.Get("archived"); v != "" {
		if f.Archived, err = strconv.ParseBool(v); err != nil {
			return Filter{}, fmt.Errorf("%w: archived %q: want true or false", ErrBadFilter, v)
		}
	}
	if f.Page, err = number(q, "page"); err != nil {
		return Filter{}, err
	}
	if f.PageSize, err = number(q, "pagesize"); err != nil {
		return Filter{}, err
	}
	return f, f.Validate()
}

// ParseSelection reads an archive or delete selection: id (repeated or
// comma-separated), type, startdate, enddate.
func ParseSelection(q url.Values, now time.Time) (Selection, error) {
	if err := known(q, SelectionParams); err != nil {
		return Selection{}, err
	}
	var s Selection
	for _, v := range q["id"] {
		for id := range strings.SplitSeq(v, ",") {
			if id = strings.TrimSpace(id); id != "" {
				s.IDs = append(s.IDs, id)
			}
		}
	}
	s.Type = q.Get("type")
	var err error
	if s.Start, err = ParseTime(q.Get("startdate"), false, now); err != nil {
		return Selection{}, fmt.Errorf("startdate: %w", err)
	}
	if s.End, err = ParseTime(q.Get("enddate"), true, now); err != nil {
		return Selection{}, fmt.Errorf("enddate: %w", err)
	}
	return s, s.Validate()
}

// ParseTime reads a date as CloudStack takes it (2026-11-01 or
// 2026-11-01T10:00:00 or 2026-11-01 10:00:00, UTC), an RFC 3339 time, or a
// duration meaning that long before now (2h). A date alone that ends a
// range means the end of that day, so both ends are inclusive.
func ParseTime(v string, end bool, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%w: %q: a duration counts back from now, so it must be positive", ErrBadFilter, v)
		}
		return now.Add(-d).UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", v); err == nil {
		if end {
			return t.Add(24*time.Hour - time.Microsecond), nil
		}
		return t, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: %q: want a date (2026-11-01), a time (2026-11-01T10:00:00, UTC, or RFC 3339) or a duration back from now (2h)", ErrBadFilter, v)
}

func number(q url.Values, name string) (int, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: %s %q: want a whole number from 1", ErrBadFilter, name, v)
	}
	return n, nil
}

func known(q url.Values, names []string) error {
	for k := range q {
		ok := false
		for _, n := range names {
			ok = ok || k == n
		}
		if !ok {
			return fmt.Errorf("%w: unknown parameter %q (known: %s)", ErrBadFilter, k, strings.Join(names, ", "))
		}
	}
	return nil
}

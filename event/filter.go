package event

import (
	"fmt"
	"path"
	"slices"
)

// Filter selects the events a sink receives (a sink definition's events,
// levels and states): by type glob ("VOLUME_*"),
// and optionally by level and by action-event state. An empty part selects
// everything.
type Filter struct {
	patterns []string
	levels   []Level
	states   []State
}

// NewFilter checks the type patterns once.
func NewFilter(patterns []string) (Filter, error) {
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return Filter{}, fmt.Errorf("event filter %q: %w", p, err)
		}
	}
	return Filter{patterns: patterns}, nil
}

// WithLevels also requires one of the levels (INFO, WARN, ERROR).
func (f Filter) WithLevels(levels []string) (Filter, error) {
	for _, l := range levels {
		lv := Level(l)
		if lv != LevelInfo && lv != LevelWarn && lv != LevelError {
			return Filter{}, fmt.Errorf("level filter %q: want INFO, WARN or ERROR", l)
		}
		f.levels = append(f.levels, lv)
	}
	return f, nil
}

// WithStates also requires one of the states (Created, Scheduled, Started,
// Completed).
func (f Filter) WithStates(states []string) (Filter, error) {
	for _, s := range states {
		st := State(s)
		switch st {
		case StateCreated, StateScheduled, StateStarted, StateCompleted:
		default:
			return Filter{}, fmt.Errorf("state filter %q: want Created, Scheduled, Started or Completed", s)
		}
		f.states = append(f.states, st)
	}
	return f, nil
}

// Match reports whether the sink wants events of this type.
func (f Filter) Match(eventType string) bool {
	if len(f.patterns) == 0 {
		return true
	}
	for _, p := range f.patterns {
		if ok, _ := path.Match(p, eventType); ok {
			return true
		}
	}
	return false
}

// MatchEvent reports whether the sink wants the event: its type, level and
// state all match.
func (f Filter) MatchEvent(e *Envelope) bool {
	level := e.Level
	if level == "" {
		level = LevelInfo
	}
	return f.Match(e.Type) &&
		(len(f.levels) == 0 || slices.Contains(f.levels, level)) &&
		(len(f.states) == 0 || slices.Contains(f.states, e.State))
}

package delivery

import (
	"fmt"
	"path"
)

// Filter selects the event types a sink receives, by glob ("VOLUME_*").
// An empty filter selects every type.
type Filter struct{ patterns []string }

// NewFilter checks the patterns once.
func NewFilter(patterns []string) (Filter, error) {
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return Filter{}, fmt.Errorf("event filter %q: %w", p, err)
		}
	}
	return Filter{patterns: patterns}, nil
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

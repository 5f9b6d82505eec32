package event_test

import (
	"errors"
	"path"
	"strings"
	"testing"

	"github.com/courierhq/courier/event"
)

func TestFilterMatch(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		matches  []string
		rejects  []string
	}{
		{
			name:     "nil filter matches everything",
			patterns: nil,
			matches:  []string{"VOLUME_CREATE", "volume.create.done", "x", ""},
		},
		{
			name:     "empty filter matches everything",
			patterns: []string{},
			matches:  []string{"VOLUME_CREATE", "PEER_ATTACH", "a:b-c"},
		},
		{
			name:     "prefix glob",
			patterns: []string{"VOLUME_*"},
			matches:  []string{"VOLUME_CREATE", "VOLUME_DELETE", "VOLUME_"},
			rejects:  []string{"SNAPSHOT_CREATE", "VOLUME", "volume_create", "XVOLUME_CREATE"},
		},
		{
			name:     "suffix glob",
			patterns: []string{"*_CREATE"},
			matches:  []string{"VOLUME_CREATE", "SNAPSHOT_CREATE"},
			rejects:  []string{"VOLUME_DELETE", "VOLUME_CREATED"},
		},
		{
			name:     "exact name",
			patterns: []string{"PEER_ATTACH"},
			matches:  []string{"PEER_ATTACH"},
			rejects:  []string{"PEER_ATTACH2", "PEER_ATTAC", "peer_attach", "PEER_DETACH"},
		},
		{
			name:     "several patterns match any of them",
			patterns: []string{"VOLUME_*", "PEER_ATTACH"},
			matches:  []string{"VOLUME_START", "PEER_ATTACH"},
			rejects:  []string{"PEER_DETACH", "GEOREP_CREATE"},
		},
		{
			name:     "dotted types",
			patterns: []string{"volume.*"},
			matches:  []string{"volume.create", "volume.create.done"},
			rejects:  []string{"volumes.create", "volume"},
		},
		{
			name:     "single character wildcard",
			patterns: []string{"BRICK_?"},
			matches:  []string{"BRICK_1", "BRICK_X"},
			rejects:  []string{"BRICK_", "BRICK_10"},
		},
		{
			name:     "character class",
			patterns: []string{"[VS]*_CREATE"},
			matches:  []string{"VOLUME_CREATE", "SNAPSHOT_CREATE"},
			rejects:  []string{"PEER_CREATE"},
		},
		{
			name:     "escaped star is literal",
			patterns: []string{`A\*`},
			matches:  []string{"A*"},
			rejects:  []string{"AB"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := event.NewFilter(tt.patterns)
			if err != nil {
				t.Fatalf("NewFilter(%q) = %v", tt.patterns, err)
			}
			for _, typ := range tt.matches {
				if !f.Match(typ) {
					t.Errorf("filter %q does not match %q, want a match", tt.patterns, typ)
				}
			}
			for _, typ := range tt.rejects {
				if f.Match(typ) {
					t.Errorf("filter %q matches %q, want no match", tt.patterns, typ)
				}
			}
		})
	}
}

func TestFilterZeroValueMatchesEverything(t *testing.T) {
	var f event.Filter
	if !f.Match("ANY_EVENT") {
		t.Error("the zero Filter does not match, want it to select every type")
	}
}

func TestNewFilterRejectsBadPatterns(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		bad      string
	}{
		{"unclosed class", []string{"["}, "["},
		{"unclosed class after a prefix", []string{"VOLUME_["}, "VOLUME_["},
		{"unclosed class after a star", []string{"*[A-"}, "*[A-"},
		{"empty class", []string{"VOLUME_[]"}, "VOLUME_[]"},
		{"trailing backslash", []string{`VOLUME_\`}, `VOLUME_\`},
		{"bad pattern after good ones", []string{"VOLUME_*", "PEER_*", "[z-"}, "[z-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := event.NewFilter(tt.patterns)
			if err == nil {
				t.Fatalf("NewFilter(%q) = nil error, want a bad pattern error", tt.patterns)
			}
			if !errors.Is(err, path.ErrBadPattern) {
				t.Errorf("error %v does not wrap path.ErrBadPattern", err)
			}
			if !strings.Contains(err.Error(), tt.bad) {
				t.Errorf("error %q does not name the pattern %q", err, tt.bad)
			}
		})
	}
}

func TestFilterOnLevelAndState(t *testing.T) {
	f, err := event.NewFilter([]string{"VOLUME.*"})
	if err != nil {
		t.Fatal(err)
	}
	if f, err = f.WithLevels([]string{"ERROR"}); err != nil {
		t.Fatal(err)
	}
	if f, err = f.WithStates([]string{"Completed"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		e    event.Envelope
		want bool
	}{
		{event.Envelope{Type: "VOLUME.CREATE", Level: event.LevelError, State: event.StateCompleted}, true},
		{event.Envelope{Type: "VOLUME.CREATE", Level: event.LevelInfo, State: event.StateCompleted}, false},
		{event.Envelope{Type: "VOLUME.CREATE", State: event.StateCompleted}, false}, // no level means INFO
		{event.Envelope{Type: "VOLUME.CREATE", Level: event.LevelError, State: event.StateStarted}, false},
		{event.Envelope{Type: "VM.START", Level: event.LevelError, State: event.StateCompleted}, false},
	}
	for _, tt := range tests {
		if got := f.MatchEvent(&tt.e); got != tt.want {
			t.Errorf("MatchEvent(%s %s %s) = %v, want %v", tt.e.Type, tt.e.Level, tt.e.State, got, tt.want)
		}
	}
	if _, err := f.WithLevels([]string{"LOUD"}); err == nil {
		t.Error("unknown level accepted")
	}
	if _, err := f.WithStates([]string{"Done"}); err == nil {
		t.Error("unknown state accepted")
	}
}

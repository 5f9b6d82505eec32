package event

import "time"

// Attempt is the outcome of one delivery attempt of one event to one sink,
// as the delivery loop records it and the event log keeps it.
type Attempt struct {
	EventID  string        `json:"event_id"`
	Sink     string        `json:"sink"`
	Number   int           `json:"attempt"` // 1 for the first
	Outcome  string        `json:"outcome"`
	Status   int           `json:"status,omitempty"`
	Duration time.Duration `json:"duration"`
	Error    string        `json:"error,omitempty"`
	Response string        `json:"response,omitempty"`
	Node     string        `json:"node,omitempty"`
	At       time.Time     `json:"at"`
}

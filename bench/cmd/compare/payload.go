package main

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/courierhq/courier/event"
)

// eventSize is the size both systems store and POST per event: Courier's
// JSON envelope (id, type, source, node, time, level, data) and Watermill's
// message payload, which carries the same envelope.
const eventSize = 256

// dataFor returns the event's data padded so that its full envelope, as
// Courier's publisher completes and encodes it, is about eventSize bytes
// (the time stamp's length varies by a few bytes).
var benchData = func() json.RawMessage {
	e := envelope(0, nil)
	_ = e.Complete("bench")
	b, _ := json.Marshal(&e)
	pad := max(eventSize-len(b)-len(`{"note":""}`), 0)
	return json.RawMessage(`{"note":"` + strings.Repeat("x", pad) + `"}`)
}()

func envelope(i int, data json.RawMessage) event.Envelope {
	return event.Envelope{ID: eventID(i), Type: "VOLUME_CREATE", Node: "bench", Data: data}
}

// watermillPayload is the same envelope, completed and encoded by the
// harness, as a Watermill user would marshal an event before publishing.
func watermillPayload(i int) ([]byte, error) {
	e := envelope(i, benchData)
	e.Time = time.Now().UTC()
	e.Level = event.LevelInfo
	e.Source = "courier"
	return json.Marshal(&e)
}

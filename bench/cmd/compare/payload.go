package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/courierhq/courier/event"
)

// defaultEventSize is the size both systems store and deliver per event
// unless a scenario says otherwise: Courier's JSON envelope (id, type,
// source, node, time, level, data) and Watermill's message payload, which
// carries the same envelope.
const defaultEventSize = 256

var (
	dataMu    sync.Mutex
	dataCache = map[int]json.RawMessage{}
)

// dataFor returns event data padded so that the full envelope, as
// Courier's publisher completes and encodes it, is about size bytes (the
// time stamp's length varies by a few bytes).
func dataFor(size int) json.RawMessage {
	dataMu.Lock()
	defer dataMu.Unlock()
	if d, ok := dataCache[size]; ok {
		return d
	}
	e := envelope(0, nil, 1)
	_ = e.Complete("bench")
	b, _ := json.Marshal(&e)
	pad := max(size-len(b)-len(`{"note":""}`), 0)
	d := json.RawMessage(`{"note":"` + strings.Repeat("x", pad) + `"}`)
	dataCache[size] = d
	return d
}

// envelope is event i; with types above 1, the events cycle through that
// many types (VOLUME_CREATE_0, VOLUME_CREATE_1, ...).
func envelope(i int, data json.RawMessage, types int) event.Envelope {
	t := eventType
	if types > 1 {
		t += "_" + strconv.Itoa(i%types)
	}
	return event.Envelope{ID: eventID(i), Type: t, Node: "bench", Data: data}
}

// eventType is every event's type unless a scenario spreads them over
// several; Courier's AMQP sink uses it as the routing key ({type}), and so
// does the Watermill AMQP publisher here.
const eventType = "VOLUME_CREATE"

// watermillPayload is the same envelope, completed and encoded by the
// harness, as a Watermill user would marshal an event before publishing.
func watermillPayload(i, size, types int) ([]byte, error) {
	e := envelope(i, dataFor(size), types)
	e.Time = time.Now().UTC()
	e.Level = event.LevelInfo
	e.Source = "courier"
	return json.Marshal(&e)
}

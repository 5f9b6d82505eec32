package event_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/courierhq/courier/event"
)

// BenchmarkDecodeStored reads an event of about 256 bytes as the outbox
// stores it, with DecodeStored (encoding/json/v2) and, for comparison in
// the same run, with encoding/json v1, which it replaced.
func BenchmarkDecodeStored(b *testing.B) {
	stored, err := json.Marshal(event.Envelope{
		ID: "019aa3b1-5c2e-7d3f-9a4b-1c2d3e4f5a6b", Type: "VOLUME_CREATE", Source: "bench", Node: "n1",
		Time: time.Date(2026, 12, 3, 15, 0, 0, 123456789, time.UTC), Key: "gv1", Level: event.LevelInfo,
		Data: json.RawMessage(`{"name":"` + strings.Repeat("v", 120) + `"}`),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decoder=v2", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := event.DecodeStored(stored); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decoder=v1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var e event.Envelope
			if err := json.Unmarshal(stored, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

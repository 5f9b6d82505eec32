package event_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/courierhq/courier/event"
)

// FuzzDecodeEnvelope: any bytes decode to an envelope or an error, never a
// panic; a valid envelope encodes in every format as valid JSON, and
// Courier's own format decodes back to the same envelope.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range []string{
		`{"id":"a","type":"VOLUME_CREATE","time":"2026-12-02T10:00:00Z","data":{"name":"gv1"}}`,
		`{"type":"VOLUME.CREATE","state":"Completed","account":"acme","resource_id":"3","description":"line 1\nline 2"}`,
		`{"type":"T","data":[1,2,3],"key":"k","level":"ERROR","start_id":"s"}`,
		`{"type":"T","data":"\u00e9\ud83d\ude00"}`,
		`{"type":"T"} trailing`, `[]`, `null`, `{"type":"T","colour":"red"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := event.Decode(b)
		if err != nil {
			return
		}
		if e.Time.IsZero() {
			e.Time = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
		}
		if e.ID == "" {
			e.ID = "fuzz"
		}
		if e.Validate() != nil {
			return
		}
		for _, f := range []event.Format{event.FormatCourier, event.FormatGluster, event.FormatCloudEvents} {
			out, _, err := event.Encode(f, &e)
			if err != nil {
				t.Fatalf("encode a valid envelope as %s: %v", f, err)
			}
			if !json.Valid(out) {
				t.Fatalf("%s encoding is not JSON: %s", f, out)
			}
		}
		out, _, _ := event.Encode(event.FormatCourier, &e)
		back, err := event.Decode(out)
		if err != nil {
			t.Fatalf("decode its own encoding %s: %v", out, err)
		}
		if !sameEnvelope(e, back) {
			t.Fatalf("round trip changed the envelope:\n%+v\n%+v", e, back)
		}
	})
}

// sameEnvelope compares envelopes with their data as JSON values (an
// encoding may re-indent it) and their times as instants.
func sameEnvelope(a, b event.Envelope) bool {
	var da, db any
	_ = json.Unmarshal(a.Data, &da)
	_ = json.Unmarshal(b.Data, &db)
	ta, tb := a.Time, b.Time
	a.Data, b.Data, a.Time, b.Time = nil, nil, time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b) && reflect.DeepEqual(da, db) && ta.Equal(tb)
}

// FuzzDecodeStored: DecodeStored (encoding/json/v2) reads every input that
// encoding/json v1, which stored events were read with before, reads, to
// the same envelope, and StoredKey to the same key; so switching decoders
// dead-letters no stored event and orders none differently.
func FuzzDecodeStored(f *testing.F) {
	for _, s := range []string{
		`{"id":"a","type":"VOLUME_CREATE","time":"2026-12-02T10:00:00.123456789Z","key":"k","level":"INFO","data":{"name":"gv1"}}`,
		`{"id":"a","type":"T","data":{"x":1,"x":2}}`,
		"{\"id\":\"a\",\"type\":\"T\",\"data\":\"\xff\"}",
		`{"ID":"a","TYPE":"T","Start_ID":"s","colour":"red","data":null}`,
		`{"id":"a","id":"b","type":"T","time":null,"data":[1, 2 ,3]}`,
		`{"type":"T","description":"\u00e9\ud83d\ude00 \ud800"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var want event.Envelope
		if json.Unmarshal(b, &want) != nil {
			return
		}
		got, err := event.DecodeStored(b)
		if err != nil {
			t.Fatalf("v1 reads %q, DecodeStored fails: %v", b, err)
		}
		if !reflect.DeepEqual(want.Clone(), got.Clone()) {
			t.Fatalf("v1 and DecodeStored read %q differently:\n%#v\n%#v", b, want, got)
		}
		if key := event.StoredKey(b); key != want.Key {
			t.Fatalf("StoredKey(%q) = %q, want %q", b, key, want.Key)
		}
	})
}

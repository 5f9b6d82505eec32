package ingest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/courierhq/courier/event"
)

var fuzzContentTypes = []string{contentJSON, contentNDJSON, contentCloudEvent, contentCloudEventBatch, "binary"}

// FuzzDecode feeds any body under every content type the endpoint reads:
// decoding answers a request error or events, never panics; and a
// CloudEvent that decodes to a valid envelope leaves as a CloudEvent that
// decodes to the same envelope again (a CloudEvent in is the same out).
func FuzzDecode(f *testing.F) {
	seeds := []struct {
		kind uint8
		body string
	}{
		{0, `{"type":"VOLUME_CREATE","key":"gv1","data":{"name":"gv1"}}`},
		{0, `[{"id":"a","type":"T"},{"type":"bad type"}]`},
		{1, "{\"type\":\"T\"}\n\n{\"type\":\"T\",\"level\":\"WARN\"}\r\n"},
		{2, `{"specversion":"1.0","id":"c1","source":"/s","type":"VOLUME.CREATE","subject":"v3","time":"2026-12-02T10:00:00Z","account":"acme","datacontenttype":"application/json","data":{"size":20}}`},
		{2, `{"specversion":"1.0","id":"c2","source":"/s","type":"T","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`},
		{3, `[{"specversion":"1.0","id":"c3","source":"/s","type":"T","data":[1,2]}]`},
		{4, `{"size":20}`},
	}
	for _, s := range seeds {
		f.Add(s.kind, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		ct := fuzzContentTypes[int(kind)%len(fuzzContentTypes)]
		r := httptest.NewRequest(http.MethodPost, "/v1/events", bytes.NewReader(body))
		if ct == "binary" {
			r.Header.Set("Ce-Specversion", "1.0")
			r.Header.Set("Ce-Id", "b1")
			r.Header.Set("Ce-Source", "/s")
			r.Header.Set("Ce-Type", "T")
			r.Header.Set("Content-Type", contentJSON)
		} else {
			r.Header.Set("Content-Type", ct)
		}
		req, err := decode(r, body)
		if err != nil {
			return
		}
		if len(req.items) == 0 {
			t.Fatal("a request without events and without an error")
		}
		if ct != contentCloudEvent && ct != contentCloudEventBatch {
			return
		}
		for _, it := range req.items {
			if it.err != nil {
				continue
			}
			env := it.env
			if env.Time.IsZero() {
				env.Time = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
			}
			if env.Level == "" {
				env.Level = event.LevelInfo
			}
			if env.Validate() != nil {
				continue
			}
			out, _, err := event.Encode(event.FormatCloudEvents, &env)
			if err != nil {
				t.Fatalf("encode %+v: %v", env, err)
			}
			again := decodeCloudEvent(out)
			if again.err != nil {
				t.Fatalf("the CloudEvent Courier sends does not decode: %v\n%s", again.err, out)
			}
			if !sameEnvelope(env, again.env) {
				t.Fatalf("in:  %+v\nout: %+v\n%s", env, again.env, out)
			}
		}
	})
}

func sameEnvelope(a, b event.Envelope) bool {
	var da, db any
	_ = json.Unmarshal(a.Data, &da)
	_ = json.Unmarshal(b.Data, &db)
	ta, tb := a.Time, b.Time
	a.Data, b.Data, a.Time, b.Time = nil, nil, time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b) && reflect.DeepEqual(da, db) && ta.Equal(tb)
}

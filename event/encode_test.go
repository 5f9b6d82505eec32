package event_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/courierhq/courier/event"
)

// compactJSON returns b without insignificant whitespace, failing the test
// when b is not JSON.
func compactJSON(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("not JSON: %v: %q", err, b)
	}
	return buf.String()
}

func TestEncodeGlusterIsExactlyGlustersWebhookBody(t *testing.T) {
	// Gluster's events API posts {"nodeid": NODEID, "ts": EVENT_TIMESTAMP,
	// "event": EVENT_TYPE, "message": EVENT_DATA} with ts in Unix seconds.
	at := time.Date(2024, 7, 1, 12, 30, 45, 987654321, time.FixedZone("CEST", 2*60*60))
	tests := []struct {
		name string
		data json.RawMessage
		want string
	}{
		{"with data", json.RawMessage(`{"name": "gv0", "bricks": 3}`),
			`{"nodeid":"node-1","ts":1719829845,"event":"VOLUME_CREATE","message":{"name":"gv0","bricks":3}}`},
		{"without data, message is an empty object", nil,
			`{"nodeid":"node-1","ts":1719829845,"event":"VOLUME_CREATE","message":{}}`},
		{"with empty data, message is an empty object", json.RawMessage{},
			`{"nodeid":"node-1","ts":1719829845,"event":"VOLUME_CREATE","message":{}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := validEnvelope()
			e.Node, e.Type, e.Time, e.Data = "node-1", "VOLUME_CREATE", at, tt.data
			body, ct, err := event.Encode(event.FormatGluster, &e)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if ct != "application/json" {
				t.Errorf("content type = %q, want application/json", ct)
			}
			if string(body) != tt.want {
				t.Errorf("body =\n%s\nwant\n%s", body, tt.want)
			}
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(body, &fields); err != nil {
				t.Fatalf("body is not a JSON object: %v", err)
			}
			if got := slices.Sorted(maps.Keys(fields)); !slices.Equal(got, []string{"event", "message", "nodeid", "ts"}) {
				t.Errorf("body fields = %v, want exactly nodeid, ts, event, message", got)
			}
			var ts int64
			if err := json.Unmarshal(fields["ts"], &ts); err != nil || ts != at.Unix() {
				t.Errorf("ts = %s, want the integer %d (Unix seconds)", fields["ts"], at.Unix())
			}
		})
	}
}

func TestEncodeGlusterCarriesCloudStackFieldsInsideMessage(t *testing.T) {
	at := time.Unix(1719829845, 0)
	all := `"description":"Successfully completed creating volume. Volume Id: 3","account":"admin",` +
		`"domain":"ROOT","user":"admin-user","resource_id":"3","resource_type":"Volume"`
	tests := []struct {
		name    string
		data    json.RawMessage
		fields  func(*event.Envelope)
		message string
	}{
		{"added after the data's own keys, in envelope order", json.RawMessage(`{"name": "gv0", "bricks": 3}`), nil,
			`{"name":"gv0","bricks":3,` + all + `}`},
		{"without data, message holds the fields alone", nil, nil, `{` + all + `}`},
		{"into an empty object with whitespace", json.RawMessage(" { \n } \n"), nil, `{` + all + `}`},
		{"the data's own keys win", json.RawMessage(`{"account":"from-data","resource_id":7}`), nil,
			`{"account":"from-data","resource_id":7,"description":"Successfully completed creating volume. Volume Id: 3",` +
				`"domain":"ROOT","user":"admin-user","resource_type":"Volume"}`},
		{"only the fields that are set", json.RawMessage(`{"name":"gv0"}`), func(e *event.Envelope) {
			e.Description, e.Domain, e.User, e.ResourceType = "", "", "", ""
		}, `{"name":"gv0","account":"admin","resource_id":"3"}`},
		{"an array message is left as it is", json.RawMessage(`[1, 2]`), nil, `[1,2]`},
		{"a string message is left as it is", json.RawMessage(`"text"`), nil, `"text"`},
		{"a null message is left as it is", json.RawMessage(`null`), nil, `null`},
		{"values are JSON-escaped", json.RawMessage(`{}`), func(e *event.Envelope) {
			*e = event.Envelope{ID: e.ID, Type: e.Type, Node: e.Node, Time: e.Time,
				Description: "line 1\n\"quoted\" \\ é"}
		}, `{"description":"line 1\n\"quoted\" \\ é"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := withCloudStackFields(validEnvelope())
			e.Node, e.Type, e.Time, e.Data = "node-1", "VOLUME_CREATE", at, tt.data
			if tt.fields != nil {
				tt.fields(&e)
			}
			body, _, err := event.Encode(event.FormatGluster, &e)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			want := `{"nodeid":"node-1","ts":1719829845,"event":"VOLUME_CREATE","message":` + tt.message + `}`
			if string(body) != want {
				t.Errorf("body =\n%s\nwant\n%s", body, want)
			}
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(body, &fields); err != nil {
				t.Fatalf("body is not a JSON object: %v", err)
			}
			if got := slices.Sorted(maps.Keys(fields)); !slices.Equal(got, []string{"event", "message", "nodeid", "ts"}) {
				t.Errorf("body fields = %v, want exactly nodeid, ts, event, message", got)
			}
		})
	}
}

func TestEncodeGlusterReportsDataThatIsNotJSON(t *testing.T) {
	e := withCloudStackFields(validEnvelope())
	e.Data = json.RawMessage(`{"name":`)
	if body, _, err := event.Encode(event.FormatGluster, &e); err == nil {
		t.Fatalf("Encode = %s, nil; want an error for data that is not JSON", body)
	} else if !strings.Contains(err.Error(), e.ID) {
		t.Errorf("error %q does not name the event", err)
	}
}

func TestEncodeCloudEventsStructured(t *testing.T) {
	e := withCloudStackFields(validEnvelope())
	e.Time = time.Date(2024, 7, 1, 14, 30, 45, 123456789, time.FixedZone("CEST", 2*60*60))
	body, ct, err := event.Encode(event.FormatCloudEvents, &e)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if ct != "application/cloudevents+json" {
		t.Errorf("content type = %q, want application/cloudevents+json", ct)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body is not a JSON object: %v", err)
	}
	str := func(name string) string {
		t.Helper()
		var s string
		if err := json.Unmarshal(got[name], &s); err != nil {
			t.Errorf("attribute %s = %s, want a string", name, got[name])
		}
		return s
	}
	wantStrings := map[string]string{
		"specversion":     "1.0",
		"id":              e.ID,
		"source":          e.Source,
		"type":            e.Type,
		"subject":         e.Key,
		"datacontenttype": "application/json",
		"level":           "INFO",
		"state":           "Completed",
		"startid":         e.StartID,
		"node":            e.Node,
		"description":     "Successfully completed creating volume. Volume Id: 3",
		"account":         "admin",
		"domain":          "ROOT",
		"user":            "admin-user",
		"resourceid":      "3",
		"resourcetype":    "Volume",
	}
	for name, want := range wantStrings {
		if s := str(name); s != want {
			t.Errorf("attribute %s = %q, want %q", name, s, want)
		}
	}
	tm, err := time.Parse(time.RFC3339, str("time"))
	if err != nil {
		t.Errorf("time %q is not RFC 3339: %v", str("time"), err)
	} else if !tm.Equal(e.Time) {
		t.Errorf("time = %s, want %s", tm, e.Time)
	}
	if !strings.HasSuffix(str("time"), "Z") {
		t.Errorf("time = %q, want UTC", str("time"))
	}
	if d := compactJSON(t, got["data"]); d != `{"name":"gv0"}` {
		t.Errorf("data = %s, want the event data as JSON", d)
	}
	wantNames := append(slices.Collect(maps.Keys(wantStrings)), "time", "data")
	if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, slices.Sorted(slices.Values(wantNames))) {
		t.Errorf("attributes = %v, want %v", names, slices.Sorted(slices.Values(wantNames)))
	}
	checkCloudEventsNames(t, slices.Collect(maps.Keys(got)))
}

// checkCloudEventsNames fails for a name CloudEvents 1.0 does not allow:
// lower-case ASCII letters and digits only, and at most 20 of them.
func checkCloudEventsNames(t *testing.T, names []string) {
	t.Helper()
	valid := regexp.MustCompile(`^[a-z0-9]{1,20}$`)
	for _, name := range names {
		if !valid.MatchString(name) {
			t.Errorf("attribute name %q is not a valid CloudEvents attribute name", name)
		}
	}
}

func TestEncodeCloudEventsStructuredOmitsEmptyOptionalAttributes(t *testing.T) {
	e := event.Envelope{ID: "id-1", Type: "x", Source: "courier", Time: time.Unix(1700000000, 0)}
	body, _, err := event.Encode(event.FormatCloudEvents, &e)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	want := `{"specversion":"1.0","id":"id-1","source":"courier","type":"x","time":"2023-11-14T22:13:20Z"}`
	if string(body) != want {
		t.Errorf("body =\n%s\nwant\n%s", body, want)
	}
}

func TestEncodeCourierIsTheEnvelopeItself(t *testing.T) {
	for _, f := range []event.Format{"", event.FormatCourier} {
		t.Run(string(f), func(t *testing.T) {
			e := withCloudStackFields(validEnvelope())
			body, ct, err := event.Encode(f, &e)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if ct != "application/json" {
				t.Errorf("content type = %q, want application/json", ct)
			}
			back, err := event.Decode(body)
			if err != nil {
				t.Fatalf("the courier encoding does not decode: %v", err)
			}
			if back.ID != e.ID || back.Type != e.Type || back.Source != e.Source || back.Node != e.Node ||
				!back.Time.Equal(e.Time) || back.Key != e.Key || back.Level != e.Level ||
				back.State != e.State || back.StartID != e.StartID || string(back.Data) != string(e.Data) ||
				back.Description != e.Description || back.Account != e.Account || back.Domain != e.Domain ||
				back.User != e.User || back.ResourceID != e.ResourceID || back.ResourceType != e.ResourceType {
				t.Errorf("round trip = %+v, want %+v", back, e)
			}
		})
	}
}

func TestEncodeRejectsUnknownFormat(t *testing.T) {
	e := validEnvelope()
	body, ct, err := event.Encode("xml", &e)
	if err == nil {
		t.Fatalf("Encode(xml) = %q, %q, nil; want an error", body, ct)
	}
	if !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("error %q does not name the format", err)
	}
	if body != nil || ct != "" {
		t.Errorf("Encode returned %q, %q with its error", body, ct)
	}
}

func TestCloudEventsBinary(t *testing.T) {
	at := time.Date(2024, 7, 1, 14, 30, 45, 5, time.FixedZone("CEST", 2*60*60))
	tests := []struct {
		name      string
		e         event.Envelope
		wantAttrs map[string]string
		wantData  string
	}{
		{
			name: "every attribute",
			e: event.Envelope{ID: "id-1", Type: "VOLUME_CREATE", Source: "glusterd", Node: "n1", Time: at,
				Key: "gv0", Level: event.LevelWarn, State: event.StateStarted, StartID: "s1",
				Description: "Creating volume. Volume Id: 3", Account: "admin", Domain: "ROOT",
				User: "admin-user", ResourceID: "3", ResourceType: "Volume",
				Data: json.RawMessage(`{"name":"gv0"}`)},
			wantAttrs: map[string]string{
				"specversion": "1.0", "id": "id-1", "source": "glusterd", "type": "VOLUME_CREATE",
				"time": "2024-07-01T12:30:45.000000005Z", "subject": "gv0", "level": "WARN",
				"state": "Started", "startid": "s1", "node": "n1",
				"description": "Creating volume. Volume Id: 3", "account": "admin", "domain": "ROOT",
				"user": "admin-user", "resourceid": "3", "resourcetype": "Volume",
			},
			wantData: `{"name":"gv0"}`,
		},
		{
			name: "some CloudStack attributes",
			e: event.Envelope{ID: "id-3", Type: "x", Source: "courier", Time: at,
				Account: "admin", ResourceType: "Volume"},
			wantAttrs: map[string]string{
				"specversion": "1.0", "id": "id-3", "source": "courier", "type": "x",
				"time": "2024-07-01T12:30:45.000000005Z", "account": "admin", "resourcetype": "Volume",
			},
			wantData: `{}`,
		},
		{
			name: "empty optional attributes are left out and data defaults to an empty object",
			e:    event.Envelope{ID: "id-2", Type: "x", Source: "courier", Time: at},
			wantAttrs: map[string]string{
				"specversion": "1.0", "id": "id-2", "source": "courier", "type": "x",
				"time": "2024-07-01T12:30:45.000000005Z",
			},
			wantData: `{}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attrs, data, ct := event.CloudEventsBinary(&tt.e)
			if !maps.Equal(attrs, tt.wantAttrs) {
				t.Errorf("attributes = %v, want %v", attrs, tt.wantAttrs)
			}
			if string(data) != tt.wantData {
				t.Errorf("data = %s, want %s", data, tt.wantData)
			}
			if ct != "application/json" {
				t.Errorf("content type = %q, want application/json (the data's type)", ct)
			}
			checkCloudEventsNames(t, slices.Collect(maps.Keys(attrs)))
		})
	}
}

func TestParseFormat(t *testing.T) {
	tests := []struct {
		in      string
		want    event.Format
		wantErr bool
	}{
		{"", event.FormatCourier, false},
		{"courier", event.FormatCourier, false},
		{"gluster", event.FormatGluster, false},
		{"cloudevents", event.FormatCloudEvents, false},
		{"Gluster", "", true},
		{"cloudevents-binary", "", true},
		{"json", "", true},
		{" gluster", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := event.ParseFormat(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseFormat(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseFormat(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), tt.in) {
				t.Errorf("error %q does not name the format %q", err, tt.in)
			}
		})
	}
}

// A stored event is delivered in Courier's format exactly as emit stored
// it, and re-encoded for every other format.
func TestEncodeStoredEventSendsTheStoredBytes(t *testing.T) {
	in := event.Envelope{ID: "e1", Type: "VOLUME_CREATE", Node: "n1", Key: "v1",
		Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Data: json.RawMessage(`{"name":"v1"}`)}
	stored, err := json.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	e, err := event.DecodeStored(stored)
	if err != nil {
		t.Fatal(err)
	}
	body, ct, err := event.Encode(event.FormatCourier, &e)
	if err != nil || ct != event.ContentTypeJSON {
		t.Fatalf("Encode: %v, %q", err, ct)
	}
	if !bytes.Equal(body, stored) {
		t.Fatalf("body %s, want the stored bytes %s", body, stored)
	}
	// Encoding anew gives the same bytes: the shortcut changes nothing.
	fresh := in
	if again, _, _ := event.Encode(event.FormatCourier, &fresh); !bytes.Equal(again, stored) {
		t.Fatalf("encoded anew %s, stored %s", again, stored)
	}
	gluster, _, err := event.Encode(event.FormatGluster, &e)
	if err != nil || !strings.Contains(string(gluster), `"nodeid":"n1"`) {
		t.Fatalf("gluster body %s, %v", gluster, err)
	}
	if _, err := event.DecodeStored([]byte(`{"id":`)); err == nil {
		t.Fatal("DecodeStored accepted truncated JSON")
	}
}

package event_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/courierhq/courier/event"
)

// validEnvelope is a complete envelope that passes Validate; cases mutate a
// copy of it.
func validEnvelope() event.Envelope {
	return event.Envelope{
		ID:      "0190f5c2-7d3e-7c4a-9a7b-1f2e3d4c5b6a",
		Type:    "VOLUME_CREATE",
		Source:  "glusterd",
		Node:    "node-1",
		Time:    time.Date(2024, 7, 1, 12, 30, 45, 123456789, time.UTC),
		Key:     "gv0",
		Level:   event.LevelInfo,
		State:   event.StateCompleted,
		StartID: "start-1",
		Data:    json.RawMessage(`{"name":"gv0"}`),
	}
}

// withCloudStackFields sets every CloudStack field of e.
func withCloudStackFields(e event.Envelope) event.Envelope {
	e.Description = "Successfully completed creating volume. Volume Id: 3"
	e.Account = "admin"
	e.Domain = "ROOT"
	e.User = "admin-user"
	e.ResourceID = "3"
	e.ResourceType = "Volume"
	return e
}

func TestValidateAcceptsWellFormedEnvelopes(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*event.Envelope)
	}{
		{"complete envelope", func(*event.Envelope) {}},
		{"only the required fields", func(e *event.Envelope) {
			*e = event.Envelope{ID: "id-1", Type: "x", Time: time.Unix(1, 0)}
		}},
		{"dotted type", func(e *event.Envelope) { e.Type = "volume.create.done" }},
		{"type with digits, underscore, dash and colon", func(e *event.Envelope) { e.Type = "Vol_2-x:y" }},
		{"type of 255 characters", func(e *event.Envelope) { e.Type = strings.Repeat("a", 255) }},
		{"id with dots and colons", func(e *event.Envelope) { e.ID = "node-1:42.7_x" }},
		{"id of 128 characters", func(e *event.Envelope) { e.ID = strings.Repeat("i", 128) }},
		{"empty level", func(e *event.Envelope) { e.Level = "" }},
		{"level WARN", func(e *event.Envelope) { e.Level = event.LevelWarn }},
		{"level ERROR", func(e *event.Envelope) { e.Level = event.LevelError }},
		{"empty state", func(e *event.Envelope) { e.State = "" }},
		{"state Created", func(e *event.Envelope) { e.State = event.StateCreated }},
		{"state Scheduled", func(e *event.Envelope) { e.State = event.StateScheduled }},
		{"state Started", func(e *event.Envelope) { e.State = event.StateStarted }},
		{"no data", func(e *event.Envelope) { e.Data = nil }},
		{"array data", func(e *event.Envelope) { e.Data = json.RawMessage(`[1,2,3]`) }},
		{"string data", func(e *event.Envelope) { e.Data = json.RawMessage(`"text"`) }},
		{"data with whitespace", func(e *event.Envelope) { e.Data = json.RawMessage(" {\"a\": [true, null]}\n") }},
		{"every CloudStack field", func(e *event.Envelope) { *e = withCloudStackFields(*e) }},
		{"description of 4096 bytes", func(e *event.Envelope) { e.Description = strings.Repeat("d", 4096) }},
		{"description over several lines, with a tab", func(e *event.Envelope) {
			e.Description = "Error while creating volume.\n\tVolume Id: 3\r\n"
		}},
		{"non-ASCII description", func(e *event.Envelope) { e.Description = "Volume « données » créé" }},
		{"account of 255 bytes", func(e *event.Envelope) { e.Account = strings.Repeat("a", 255) }},
		{"domain of 255 bytes", func(e *event.Envelope) { e.Domain = strings.Repeat("d", 255) }},
		{"user of 255 bytes", func(e *event.Envelope) { e.User = strings.Repeat("u", 255) }},
		{"resource_id of 255 bytes", func(e *event.Envelope) { e.ResourceID = strings.Repeat("r", 255) }},
		{"resource_type of 255 bytes", func(e *event.Envelope) { e.ResourceType = strings.Repeat("t", 255) }},
		{"names with spaces, slashes and non-ASCII letters", func(e *event.Envelope) {
			e.Account, e.Domain, e.User = "Jürgen Müller", "ROOT/sub domain", "jürgen@example.com"
			e.ResourceID, e.ResourceType = "0190f5c2-7d3e-7c4a-9a7b-1f2e3d4c5b6a", "Network ACL"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := validEnvelope()
			tt.mutate(&e)
			if err := e.Validate(); err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
		})
	}
}

func TestValidateRejectsMalformedEnvelopes(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*event.Envelope)
		wantMsg string // a part of the error that says what is wrong
	}{
		{"missing type", func(e *event.Envelope) { e.Type = "" }, "type is required"},
		{"type with a space", func(e *event.Envelope) { e.Type = "VOLUME CREATE" }, `type "VOLUME CREATE"`},
		{"type with a star wildcard", func(e *event.Envelope) { e.Type = "VOLUME_*" }, `type "VOLUME_*"`},
		{"type that is a star token", func(e *event.Envelope) { e.Type = "volume.*" }, `type "volume.*"`},
		{"type with a tail wildcard", func(e *event.Envelope) { e.Type = "volume.>" }, `type "volume.>"`},
		{"type with a leading dot", func(e *event.Envelope) { e.Type = ".volume" }, `type ".volume"`},
		{"type with a trailing dot", func(e *event.Envelope) { e.Type = "volume." }, `type "volume."`},
		{"type with an empty token", func(e *event.Envelope) { e.Type = "volume..create" }, `type "volume..create"`},
		{"type with a slash", func(e *event.Envelope) { e.Type = "volume/create" }, `type "volume/create"`},
		{"type with a tab", func(e *event.Envelope) { e.Type = "volume\tcreate" }, "type"},
		{"type with a non-ASCII letter", func(e *event.Envelope) { e.Type = "volumé" }, "type"},
		{"type of 256 characters", func(e *event.Envelope) { e.Type = strings.Repeat("a", 256) }, "type"},
		{"missing id", func(e *event.Envelope) { e.ID = "" }, "id is required"},
		{"id with a space", func(e *event.Envelope) { e.ID = "a b" }, `id "a b"`},
		{"id with a newline", func(e *event.Envelope) { e.ID = "a\nb" }, "id"},
		{"id of 129 characters", func(e *event.Envelope) { e.ID = strings.Repeat("i", 129) }, "id"},
		{"zero time", func(e *event.Envelope) { e.Time = time.Time{} }, "time is required"},
		{"lower-case level", func(e *event.Envelope) { e.Level = "info" }, `level "info"`},
		{"unknown level", func(e *event.Envelope) { e.Level = "DEBUG" }, `level "DEBUG"`},
		{"unknown state", func(e *event.Envelope) { e.State = "Done" }, `state "Done"`},
		{"lower-case state", func(e *event.Envelope) { e.State = "completed" }, `state "completed"`},
		{"truncated data", func(e *event.Envelope) { e.Data = json.RawMessage(`{"name":`) }, "data is not valid JSON"},
		{"data that is not JSON", func(e *event.Envelope) { e.Data = json.RawMessage(`name=gv0`) }, "data is not valid JSON"},
		{"data with two values", func(e *event.Envelope) { e.Data = json.RawMessage(`{} {}`) }, "data is not valid JSON"},
		{"description of 4097 bytes", func(e *event.Envelope) { e.Description = strings.Repeat("d", 4097) }, "description is 4097 bytes long, at most 4096"},
		{"description of 4096 bytes with a multi-byte character past them", func(e *event.Envelope) {
			e.Description = strings.Repeat("d", 4095) + "é"
		}, "description is 4097 bytes long"},
		{"description that is not UTF-8", func(e *event.Envelope) { e.Description = "Volume \xff" }, "description is not valid UTF-8"},
		{"account of 256 bytes", func(e *event.Envelope) { e.Account = strings.Repeat("a", 256) }, "account is 256 bytes long, at most 255"},
		{"domain of 256 bytes", func(e *event.Envelope) { e.Domain = strings.Repeat("d", 256) }, "domain is 256 bytes long, at most 255"},
		{"user of 256 bytes", func(e *event.Envelope) { e.User = strings.Repeat("u", 256) }, "user is 256 bytes long, at most 255"},
		{"resource_id of 256 bytes", func(e *event.Envelope) { e.ResourceID = strings.Repeat("r", 256) }, "resource_id is 256 bytes long, at most 255"},
		{"resource_type of 256 bytes", func(e *event.Envelope) { e.ResourceType = strings.Repeat("t", 256) }, "resource_type is 256 bytes long, at most 255"},
		{"account that is not UTF-8", func(e *event.Envelope) { e.Account = "adm\xc3" }, "account is not valid UTF-8"},
		{"domain that is not UTF-8", func(e *event.Envelope) { e.Domain = "\xff" }, "domain is not valid UTF-8"},
		{"user that is not UTF-8", func(e *event.Envelope) { e.User = "\xed\xa0\x80" }, "user is not valid UTF-8"},
		{"resource_id that is not UTF-8", func(e *event.Envelope) { e.ResourceID = "3\x80" }, "resource_id is not valid UTF-8"},
		{"resource_type that is not UTF-8", func(e *event.Envelope) { e.ResourceType = "Vol\xfe" }, "resource_type is not valid UTF-8"},
		{"account with a newline", func(e *event.Envelope) { e.Account = "admin\nX-Injected: 1" }, "account \"admin\\nX-Injected: 1\": control character U+000A at byte 5"},
		{"domain with a tab", func(e *event.Envelope) { e.Domain = "ROOT\tsub" }, "domain \"ROOT\\tsub\": control character U+0009 at byte 4"},
		{"user with a NUL", func(e *event.Envelope) { e.User = "admin\x00" }, "user \"admin\\x00\": control character U+0000 at byte 5"},
		{"resource_id with a carriage return", func(e *event.Envelope) { e.ResourceID = "3\r" }, "resource_id \"3\\r\": control character U+000D at byte 1"},
		{"resource_type with DEL", func(e *event.Envelope) { e.ResourceType = "Vol\x7f" }, "resource_type \"Vol\\x7f\": control character U+007F at byte 3"},
		{"account with a C1 control (NEL)", func(e *event.Envelope) { e.Account = "é\u0085" }, "account \"é\\u0085\": control character U+0085 at byte 2"},
		{"resource_type with an escape sequence", func(e *event.Envelope) { e.ResourceType = "\x1b[31mVolume" }, "resource_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := validEnvelope()
			tt.mutate(&e)
			err := e.Validate()
			if err == nil {
				t.Fatal("Validate() = nil, want an error")
			}
			if !errors.Is(err, event.ErrInvalid) {
				t.Errorf("Validate() = %v, want it to wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Validate() = %q, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestCloudStackFieldsRoundTripThroughJSON(t *testing.T) {
	in := withCloudStackFields(validEnvelope())
	in.Description = "Error while creating volume.\n\"gv0\" <is> & stays"
	b, err := json.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	var names map[string]json.RawMessage
	if err := json.Unmarshal(b, &names); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"description": in.Description, "account": "admin", "domain": "ROOT",
		"user": "admin-user", "resource_id": "3", "resource_type": "Volume",
	}
	for name, v := range want {
		var got string
		if err := json.Unmarshal(names[name], &got); err != nil || got != v {
			t.Errorf("JSON field %s = %s, want %q", name, names[name], v)
		}
	}
	for _, decode := range []struct {
		name string
		fn   func([]byte) (event.Envelope, error)
	}{{"Decode", event.Decode}, {"DecodeStored", event.DecodeStored}} {
		t.Run(decode.name, func(t *testing.T) {
			back, err := decode.fn(b)
			if err != nil {
				t.Fatalf("%s: %v", decode.name, err)
			}
			if back.Description != in.Description || back.Account != in.Account || back.Domain != in.Domain ||
				back.User != in.User || back.ResourceID != in.ResourceID || back.ResourceType != in.ResourceType {
				t.Errorf("round trip = %+v, want %+v", back, in)
			}
			if err := back.Validate(); err != nil {
				t.Errorf("the decoded envelope does not validate: %v", err)
			}
		})
	}
}

func TestCloudStackFieldsAreLeftOutWhenEmpty(t *testing.T) {
	e := validEnvelope()
	b, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"description", "account", "domain", "user", "resource_id", "resource_type"} {
		if strings.Contains(string(b), `"`+name+`"`) {
			t.Errorf("empty %s is in the encoded envelope: %s", name, b)
		}
	}
}

func TestCompleteFillsMissingFields(t *testing.T) {
	before := time.Now()
	e := event.Envelope{Type: "VOLUME_CREATE"}
	if err := e.Complete("node-7"); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	after := time.Now()

	id, err := uuid.Parse(e.ID)
	if err != nil {
		t.Fatalf("id %q is not a UUID: %v", e.ID, err)
	}
	if id.Version() != 7 {
		t.Errorf("id %q is a version %d UUID, want 7 (time-sortable)", e.ID, id.Version())
	}
	sec, nsec := id.Time().UnixTime()
	idTime := time.Unix(sec, nsec)
	if idTime.Before(before.Truncate(time.Millisecond)) || idTime.After(after) {
		t.Errorf("id %q carries time %s, want between %s and %s", e.ID, idTime, before, after)
	}
	if e.Time.Location() != time.UTC {
		t.Errorf("time location = %v, want UTC", e.Time.Location())
	}
	if e.Time.Before(before) || e.Time.After(after) {
		t.Errorf("time = %s, want between %s and %s", e.Time, before, after)
	}
	if e.Level != event.LevelInfo {
		t.Errorf("level = %q, want %q", e.Level, event.LevelInfo)
	}
	if e.Node != "node-7" {
		t.Errorf("node = %q, want node-7", e.Node)
	}
	if e.Source != "courier" {
		t.Errorf("source = %q, want courier", e.Source)
	}
	if err := e.Validate(); err != nil {
		t.Errorf("a completed envelope does not validate: %v", err)
	}
}

func TestCompleteKeepsWhatTheProducerSet(t *testing.T) {
	paris := time.FixedZone("CEST", 2*60*60)
	at := time.Date(2024, 7, 1, 14, 30, 0, 5, paris)
	e := event.Envelope{
		ID: "my-id", Type: "x", Time: at, Level: event.LevelError,
		Node: "producer-node", Source: "glusterd",
	}
	if err := e.Complete("worker-node"); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	want := event.Envelope{
		ID: "my-id", Type: "x", Time: at.UTC(), Level: event.LevelError,
		Node: "producer-node", Source: "glusterd",
	}
	if e.ID != want.ID || e.Level != want.Level || e.Node != want.Node || e.Source != want.Source {
		t.Errorf("Complete changed set fields: got %+v, want %+v", e, want)
	}
	if !e.Time.Equal(at) {
		t.Errorf("time = %s, want the same instant as %s", e.Time, at)
	}
	if e.Time.Location() != time.UTC {
		t.Errorf("time location = %v, want UTC", e.Time.Location())
	}
}

func TestCompleteGivesIncreasingIDs(t *testing.T) {
	const n = 2000
	ids := make([]string, n)
	for i := range ids {
		e := event.Envelope{Type: "x"}
		if err := e.Complete(""); err != nil {
			t.Fatalf("Complete: %v", err)
		}
		ids[i] = e.ID
	}
	if !slices.IsSorted(ids) {
		t.Fatal("ids made one after the other do not sort in the order they were made")
	}
	if got := len(slices.Compact(slices.Clone(ids))); got != n {
		t.Fatalf("%d distinct ids out of %d", got, n)
	}
}

func TestDecodeAcceptsOneEnvelope(t *testing.T) {
	in := `{"id":"id-1","type":"VOLUME_CREATE","source":"glusterd","node":"n1",` +
		`"time":"2024-07-01T12:30:45.5Z","key":"gv0","level":"WARN","state":"Started",` +
		`"start_id":"s1","description":"Volume created","account":"admin","domain":"ROOT",` +
		`"user":"u1","resource_id":"3","resource_type":"Volume","data":{"name":"gv0"}}`
	tests := []struct {
		name string
		in   string
	}{
		{"compact", in},
		{"with a trailing newline", in + "\n"},
		{"with surrounding whitespace", " \n\t" + in + " \r\n "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := event.Decode([]byte(tt.in))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			want := event.Envelope{
				ID: "id-1", Type: "VOLUME_CREATE", Source: "glusterd", Node: "n1",
				Time: time.Date(2024, 7, 1, 12, 30, 45, 5e8, time.UTC), Key: "gv0",
				Level: event.LevelWarn, State: event.StateStarted, StartID: "s1",
				Description: "Volume created", Account: "admin", Domain: "ROOT", User: "u1",
				ResourceID: "3", ResourceType: "Volume",
				Data: json.RawMessage(`{"name":"gv0"}`),
			}
			if e.ID != want.ID || e.Type != want.Type || e.Source != want.Source || e.Node != want.Node ||
				!e.Time.Equal(want.Time) || e.Key != want.Key || e.Level != want.Level ||
				e.State != want.State || e.StartID != want.StartID || string(e.Data) != string(want.Data) ||
				e.Description != want.Description || e.Account != want.Account || e.Domain != want.Domain ||
				e.User != want.User || e.ResourceID != want.ResourceID || e.ResourceType != want.ResourceType {
				t.Errorf("Decode = %+v, want %+v", e, want)
			}
		})
	}
}

func TestDecodeRejectsInvalidInput(t *testing.T) {
	obj := `{"id":"id-1","type":"x","time":"2024-07-01T12:30:45Z"}`
	tests := []struct {
		name    string
		in      string
		wantMsg string
	}{
		{"unknown field", `{"id":"id-1","type":"x","tmie":"2024-07-01T12:30:45Z"}`, "tmie"},
		{"misspelt data field", `{"id":"id-1","type":"x","payload":{}}`, "payload"},
		{"second object", obj + `{"id":"id-2"}`, "trailing data"},
		{"second object after a newline", obj + "\n" + obj, "trailing data"},
		{"trailing garbage", obj + ` garbage`, "trailing data"},
		{"trailing number", obj + ` 1`, "trailing data"},
		{"empty input", ``, ""},
		{"truncated object", `{"id":"id-1",`, ""},
		{"array instead of an object", `[` + obj + `]`, ""},
		{"wrong field type", `{"id":1}`, ""},
		{"bad time", `{"time":"yesterday"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := event.Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("Decode(%q) = %+v, nil; want an error", tt.in, e)
			}
			if !errors.Is(err, event.ErrInvalid) {
				t.Errorf("Decode error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Decode error %q does not contain %q", err, tt.wantMsg)
			}
			if e.ID != "" || e.Type != "" {
				t.Errorf("Decode returned a partly filled envelope %+v with its error", e)
			}
		})
	}
}

func TestDecodeRejectsTrailingClosingDelimiters(t *testing.T) {
	obj := `{"id":"id-1","type":"x","time":"2024-07-01T12:30:45Z"}`
	for _, tail := range []string{"}", "]", " }", "\n]"} {
		t.Run(tail, func(t *testing.T) {
			if e, err := event.Decode([]byte(obj + tail)); err == nil {
				t.Errorf("Decode(%q) = %+v, nil; want a trailing data error", obj+tail, e)
			} else if !errors.Is(err, event.ErrInvalid) {
				t.Errorf("Decode error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

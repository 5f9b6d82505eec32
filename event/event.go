package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	jsonv1 "github.com/go-json-experiment/json/v1"
	"github.com/google/uuid"
)

// storedOptions make encoding/json/v2 read what encoding/json v1 reads
// (FuzzDecodeStored holds them to it): v1 accepted duplicate names and
// invalid UTF-8, as Validate's json.Valid does inside an event's data,
// matched field names in any case but with underscores as written, and
// read times as time.Parse does (a one-digit hour, say).
var storedOptions = jsonv2.JoinOptions(
	jsontext.AllowDuplicateNames(true),
	jsontext.AllowInvalidUTF8(true),
	jsonv2.MatchCaseInsensitiveNames(true),
	jsonv1.MatchCaseSensitiveDelimiter(true),
	jsonv1.ParseTimeWithLooseRFC3339(true),
)

// Level is the severity of an event, as in CloudStack's action events.
type Level string

// Levels accepted in an envelope.
const (
	LevelInfo  Level = "INFO"
	LevelWarn  Level = "WARN"
	LevelError Level = "ERROR"
)

// State is the stage of a job an action event reports, as in CloudStack.
type State string

// States accepted in an envelope.
const (
	StateCreated   State = "Created"
	StateScheduled State = "Scheduled"
	StateStarted   State = "Started"
	StateCompleted State = "Completed"
)

// Envelope is one event as stored in the outbox and handed to sinks.
type Envelope struct {
	ID      string    `json:"id"`
	Type    string    `json:"type"`
	Source  string    `json:"source,omitempty"`
	Node    string    `json:"node,omitempty"`
	Time    time.Time `json:"time"`
	Key     string    `json:"key,omitempty"`
	Level   Level     `json:"level,omitempty"`
	State   State     `json:"state,omitempty"`
	StartID string    `json:"start_id,omitempty"`
	// CloudStack's descriptive fields: what its event log shows and whom
	// the event belongs to. Courier routes on none of them.
	Description  string          `json:"description,omitempty"`
	Account      string          `json:"account,omitempty"`
	Domain       string          `json:"domain,omitempty"`
	User         string          `json:"user,omitempty"`
	ResourceID   string          `json:"resource_id,omitempty"`
	ResourceType string          `json:"resource_type,omitempty"`
	Data         json.RawMessage `json:"data,omitempty"`

	// encoded is the envelope as it was read (DecodeStored), which is what
	// encoding it in Courier's format gives again: a delivery sends it
	// as is instead of encoding every event anew.
	encoded []byte
}

// Clone returns a copy that shares nothing with e: changing its Data, or
// any field, changes neither e nor what e encodes to.
func (e Envelope) Clone() Envelope {
	c := e
	c.Data = bytes.Clone(e.Data)
	c.encoded = nil
	return c
}

// DecodeStored reads an envelope as emit stored it in the outbox and keeps
// data, which Encode returns for FormatCourier: a sink delivers the event as
// it was stored, without encoding it again (that was 4% of the CPU of a
// backlog drain). Unlike Decode it ignores unknown fields, as a newer
// producer's. data must not change afterwards.
//
// Every delivery attempt decodes one, so it uses encoding/json/v2 (through
// its mirror module until go.mod reaches Go 1.27), 2.4x faster than v1
// with 2 allocations instead of 13 (BenchmarkDecodeStored), with the
// options that keep v1's leniency: an event v1 stored must decode.
func DecodeStored(data []byte) (Envelope, error) {
	var e Envelope
	if err := jsonv2.Unmarshal(data, &e, storedOptions); err != nil {
		return Envelope{}, fmt.Errorf("decode stored event: %w", err)
	}
	e.encoded = data
	return e, nil
}

// StoredKey reads only the ordering key of an envelope as DecodeStored
// would read it; bytes that are not an envelope have none.
func StoredKey(data []byte) string {
	var k struct {
		Key string `json:"key"`
	}
	_ = jsonv2.Unmarshal(data, &k, storedOptions)
	return k.Key
}

// ErrInvalid is wrapped by every validation error, so callers can tell bad
// input from transport failures with errors.Is.
var ErrInvalid = errors.New("invalid event")

// typePattern keeps types usable as NATS subject tokens: the type is part of
// the outbox subject, so wildcards and spaces would corrupt routing.
var typePattern = regexp.MustCompile(`^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$`)

// idPattern rejects ids that could not travel as a header value or a NATS
// message id.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

// NewID returns a new time-sortable id (UUIDv7).
func NewID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("generate event id: %w", err)
	}
	return id.String(), nil
}

// Complete fills the fields a producer may leave out: id, time, level, and
// the node and source when given. It does not validate.
func (e *Envelope) Complete(node string) error {
	if e.ID == "" {
		id, err := NewID()
		if err != nil {
			return err
		}
		e.ID = id
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	if e.Level == "" {
		e.Level = LevelInfo
	}
	if e.Node == "" {
		e.Node = node
	}
	if e.Source == "" {
		e.Source = "courier"
	}
	return nil
}

// Validate reports the first thing wrong with the envelope.
func (e *Envelope) Validate() error {
	switch {
	case e.Type == "":
		return fmt.Errorf("%w: type is required", ErrInvalid)
	case len(e.Type) > 255 || !typePattern.MatchString(e.Type):
		return fmt.Errorf("%w: type %q: use letters, digits, '_', '-', ':' and single dots", ErrInvalid, e.Type)
	case e.ID == "":
		return fmt.Errorf("%w: id is required", ErrInvalid)
	case !idPattern.MatchString(e.ID):
		return fmt.Errorf("%w: id %q: use up to 128 letters, digits, '_', '-', '.', ':'", ErrInvalid, e.ID)
	case e.Time.IsZero():
		return fmt.Errorf("%w: time is required", ErrInvalid)
	}
	switch e.Level {
	case "", LevelInfo, LevelWarn, LevelError:
	default:
		return fmt.Errorf("%w: level %q: want INFO, WARN or ERROR", ErrInvalid, e.Level)
	}
	switch e.State {
	case "", StateCreated, StateScheduled, StateStarted, StateCompleted:
	default:
		return fmt.Errorf("%w: state %q: want Created, Scheduled, Started or Completed", ErrInvalid, e.State)
	}
	if err := checkText("description", e.Description, maxDescriptionBytes, true); err != nil {
		return err
	}
	for _, f := range []struct{ name, value string }{
		{"account", e.Account}, {"domain", e.Domain}, {"user", e.User},
		{"resource_id", e.ResourceID}, {"resource_type", e.ResourceType},
	} {
		if err := checkText(f.name, f.value, maxNameBytes, false); err != nil {
			return err
		}
	}
	if len(e.Data) > 0 && !json.Valid(e.Data) {
		return fmt.Errorf("%w: data is not valid JSON", ErrInvalid)
	}
	return nil
}

// DefaultMaxSize is the largest encoded event accepted by default (the
// outbox's max_event_size): producers, the HTTP ingest and the outbox
// agree on it.
const DefaultMaxSize = 1 << 20

// Bounds on the descriptive fields. They travel as CloudEvents binary-mode
// headers too, where a receiver's header size limit applies; a description
// is prose for a person, the others are names and ids.
const (
	maxDescriptionBytes = 4096
	maxNameBytes        = 255
)

// checkText rejects what would not survive as a header value or a log line:
// invalid UTF-8 and, unless allowControl (a description may span lines),
// control characters.
func checkText(field, v string, maxBytes int, allowControl bool) error {
	if len(v) > maxBytes {
		return fmt.Errorf("%w: %s is %d bytes long, at most %d allowed", ErrInvalid, field, len(v), maxBytes)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, field)
	}
	if allowControl {
		return nil
	}
	if i := strings.IndexFunc(v, unicode.IsControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(v[i:])
		return fmt.Errorf("%w: %s %q: control character %U at byte %d", ErrInvalid, field, v, r, i)
	}
	return nil
}

// Decode parses one JSON envelope strictly: unknown fields are an error, so a
// misspelt field is reported instead of silently dropped.
func Decode(b []byte) (Envelope, error) {
	var e Envelope
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Envelope{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Envelope{}, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalid)
	}
	return e, nil
}

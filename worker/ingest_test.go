package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/courierhq/courier/internal/testutil"
)

// TestACloudEventInIsTheSameCloudEventOut: CloudEvents sent by the
// CloudEvents SDK for Go to the ingest endpoint, in structured and binary
// mode, reach CloudEvents webhook sinks (structured and binary) as events
// the SDK reads back with the same attributes, extensions and data.
func TestACloudEventInIsTheSameCloudEventOut(t *testing.T) {
	structured, binary := testutil.NewReceiver(t), testutil.NewReceiver(t)
	n := testutil.StartNode(t, "ingest:\n  listen: 127.0.0.1:0\nsinks:\n"+
		sinkYAML("structured", structured.URL(), "format: cloudevents")+
		sinkYAML("binary", binary.URL(), "format: cloudevents\n    cloudevents_mode: binary"), nil)
	hs := httptest.NewServer(n.IngestHandler())
	t.Cleanup(hs.Close)
	client, err := cloudevents.NewClientHTTP(cehttp.WithTarget(hs.URL + "/v1/events"))
	if err != nil {
		t.Fatal(err)
	}

	sent := map[string]cloudevents.Event{}
	for _, mode := range []string{"structured", "binary"} {
		ev := cloudevents.NewEvent()
		ev.SetID("ce-" + mode)
		ev.SetSource("/cloudstack/management-server/1")
		ev.SetType("VOLUME.CREATE")
		ev.SetSubject("vol-3")
		ev.SetTime(time.Date(2026, 12, 2, 10, 0, 0, 123000000, time.UTC))
		ev.SetExtension("account", "acme")
		ev.SetExtension("resourceid", "3")
		ev.SetExtension("level", "INFO")
		if err := ev.SetData(cloudevents.ApplicationJSON, map[string]any{"size": 20, "name": "data-1"}); err != nil {
			t.Fatal(err)
		}
		ctx := cloudevents.WithEncodingStructured(context.Background())
		if mode == "binary" {
			ctx = cloudevents.WithEncodingBinary(context.Background())
		}
		if res := client.Send(ctx, ev); !cloudevents.IsACK(res) {
			t.Fatalf("send %s: %v", mode, res)
		}
		sent[ev.ID()] = ev
	}

	testutil.Eventually(t, waitFor, func() bool {
		return len(structured.Requests()) == 2 && len(binary.Requests()) == 2
	}, "both events at both sinks")
	for _, rcv := range []*testutil.Receiver{structured, binary} {
		for _, d := range rcv.Requests() {
			got, err := binding.ToEvent(context.Background(), cehttp.NewMessage(d.Header, io.NopCloser(bytes.NewReader(d.Body))))
			if err != nil {
				t.Fatalf("the SDK cannot read the delivered event: %v\n%s %s", err, d.Header, d.Body)
			}
			want, ok := sent[got.ID()]
			if !ok {
				t.Fatalf("delivered an event never sent: %s", got)
			}
			// node and the level Courier fills in are Courier's additions.
			ext := got.Extensions()
			delete(ext, "node")
			if got.Source() != want.Source() || got.Type() != want.Type() || got.Subject() != want.Subject() ||
				!got.Time().Equal(want.Time()) || !reflect.DeepEqual(ext, want.Extensions()) || !sameJSON(t, got.Data(), want.Data()) {
				t.Errorf("out:\n%s\nin:\n%s", got, want)
			}
		}
	}
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

package webhook_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/netguard"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/sinks"
	"github.com/courierhq/courier/sinks/sinktest"
	"github.com/courierhq/courier/sinks/webhook"
)

// webhookPeer is a real HTTP receiver behind a TCP proxy that can cut it off.
type webhookPeer struct {
	rcv   *testutil.Receiver
	proxy *testutil.Proxy
}

// loopback lets the sink reach the test's receivers on this machine.
func loopback() webhook.Option {
	return webhook.WithGuard(netguard.NewGuard(netguard.Policy{Allow: netguard.Loopback()}))
}

func (p *webhookPeer) url() string { return "http://" + p.proxy.Addr() + "/listen" }

func (p *webhookPeer) NewSink(t testing.TB) sinks.Sink {
	s, err := webhook.New(webhook.Config{URL: p.url(), Timeout: 2e9}, event.FormatCourier, 16, "test", loopback())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (p *webhookPeer) Received(t testing.TB) []sinktest.Received {
	var out []sinktest.Received
	for _, d := range p.rcv.Requests() {
		var e event.Envelope
		if err := json.Unmarshal(d.Body, &e); err != nil {
			t.Errorf("body %s: %v", d.Body, err)
			continue
		}
		out = append(out, sinktest.Received{ID: e.ID, TransportID: d.ID, TraceParent: d.Header.Get("traceparent")})
	}
	return out
}

func (p *webhookPeer) Stop(t testing.TB)  { p.proxy.Stop(t) }
func (p *webhookPeer) Start(t testing.TB) { p.proxy.Start(t) }

func (p *webhookPeer) Refusing(t testing.TB) (sinks.Sink, *event.Envelope) {
	return p.NewSink(t), sinktest.NewEvent("refuse-me")
}

func TestWebhookSinkConformance(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	rcv.Answer(func(d testutil.Delivery, _ int) (int, http.Header) {
		if strings.HasPrefix(d.ID, "refuse-") {
			return http.StatusBadRequest, nil
		}
		return http.StatusOK, nil
	})
	sinktest.Run(t, &webhookPeer{rcv: rcv, proxy: testutil.NewProxy(t, strings.TrimPrefix(rcv.Server.URL, "http://"))})
}

func TestSendErrorsNeverShowCredentialsOrQueryTokens(t *testing.T) {
	s, err := webhook.New(webhook.Config{URL: "http://user:s3cretpw@127.0.0.1:1/hook?token=T0KEN", Timeout: 2e9}, event.FormatCourier, 1, "test", loopback())
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(t.Context(), sinktest.NewEvent("secret-test"))
	if err == nil {
		t.Fatal("send to a closed port succeeded")
	}
	for _, secret := range []string{"s3cretpw", "T0KEN", "user"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q shows %q", err, secret)
		}
	}
}

package worker_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/courierhq/courier/event"
	"github.com/courierhq/courier/internal/testutil"
)

// TestWebhookDestinationsAreGuardedLive: with nothing allowed, a webhook
// whose name resolves to loopback dead-letters its event as "destination
// not allowed" without a request; a literal loopback URL is refused when
// defined; once an operator allows loopback (a setting, replicated), the
// next event is delivered.
func TestWebhookDestinationsAreGuardedLive(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	const token = "0123456789abcdef-test-token"
	byName := strings.Replace(rcv.URL(), "127.0.0.1", "localhost", 1)
	n := testutil.StartNode(t, "webhook_allow: []\nadmin:\n  token: "+token+"\nsinks:\n"+sinkYAML("audit", byName, ""), nil)
	p := n.Publisher(t)
	emit(t, p, event.Envelope{ID: "to-loopback", Type: "VOLUME_CREATE"})
	var dls []string
	testutil.Eventually(t, waitFor, func() bool {
		dls = nil
		for _, d := range deadLetters(t, n, "audit") {
			dls = append(dls, d.Event.ID+" ("+d.Reason+"): "+d.LastError)
		}
		return len(dls) == 1
	}, "the event dead-lettered")
	if !strings.Contains(dls[0], "destination not allowed") || !strings.Contains(dls[0], "loopback") {
		t.Errorf("dead letter %s, want the reason 'destination not allowed ... loopback'", dls[0])
	}
	if len(rcv.Requests()) != 0 {
		t.Errorf("the receiver got %d requests", len(rcv.Requests()))
	}
	if got := n.Loop("audit").Stats().Delivered.Load(); got != 0 {
		t.Errorf("delivered %d", got)
	}

	h := n.AdminHandler()
	def := `{"name": "literal", "type": "webhook", "url": "` + rcv.URL() + `"}`
	if code, body := apiCall(h, "POST", "/v1/sinks", token, def); code != http.StatusBadRequest || !strings.Contains(body, "destination not allowed") {
		t.Errorf("define a loopback webhook: %d %s, want 400 destination not allowed", code, body)
	}
	if code, body := apiCall(h, "PUT", "/v1/config/webhook-allow", token, "127.0.0.0/8"); code != http.StatusOK {
		t.Fatalf("allow loopback: %d %s", code, body)
	}
	testutil.Eventually(t, waitFor, func() bool {
		emit(t, p, event.Envelope{Type: "VOLUME_CREATE"})
		return n.Loop("audit").Stats().Delivered.Load() > 0
	}, "delivered once loopback is allowed")
	if code, body := apiCall(h, "POST", "/v1/sinks", token, def); code != http.StatusOK {
		t.Errorf("define a loopback webhook once allowed: %d %s", code, body)
	}
}

// TestRuntimeSinksExpandOnlyAllowedVariables: a sink defined through the
// admin API may name only the environment variables secrets.allow_env
// lists; the error names the variable, never its value.
func TestRuntimeSinksExpandOnlyAllowedVariables(t *testing.T) {
	const token = "0123456789abcdef-test-token"
	env := map[string]string{"HOOK_TOKEN": "allowed-value", "AWS_SECRET_ACCESS_KEY": "do-not-send-me"}
	n := testutil.StartNode(t, "secrets:\n  allow_env: [HOOK_TOKEN]\nadmin:\n  token: "+token+"\n", env)
	h := n.AdminHandler()
	rcv := testutil.NewReceiver(t)
	steal := `{"name": "steal", "type": "webhook", "url": "` + rcv.URL() + `", "bearer_token": "${AWS_SECRET_ACCESS_KEY}"}`
	code, body := apiCall(h, "POST", "/v1/sinks", token, steal)
	if code != http.StatusBadRequest || !strings.Contains(body, "AWS_SECRET_ACCESS_KEY") || !strings.Contains(body, "secrets.allow_env") || strings.Contains(body, "do-not-send-me") {
		t.Errorf("define with a variable not allowed: %d %s, want 400 naming it (not its value)", code, body)
	}
	ok := `{"name": "ok", "type": "webhook", "url": "` + rcv.URL() + `", "bearer_token": "${HOOK_TOKEN}"}`
	if code, body := apiCall(h, "POST", "/v1/sinks", token, ok); code != http.StatusOK {
		t.Fatalf("define with an allowed variable: %d %s", code, body)
	}
	testutil.Eventually(t, waitFor, func() bool { return n.Loop("ok") != nil }, "sink ok running")
	emit(t, n.Publisher(t), event.Envelope{Type: "T"})
	testutil.Eventually(t, waitFor, func() bool { return len(rcv.Requests()) == 1 }, "delivered")
	if got := rcv.Requests()[0].Header.Get("Authorization"); got != "Bearer allowed-value" {
		t.Errorf("Authorization %q, want the allowed variable's value", got)
	}
}

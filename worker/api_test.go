package worker_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/status"
)

func apiCall(h http.Handler, method, path, token, body string) (int, string) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func TestAdminAPIChangesSinksWithTokenOnly(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	const token = "0123456789abcdef-test-token"
	n := testutil.StartNode(t, "node_id: api-node\nadmin:\n  token: ${ADMIN_TOKEN}\nsinks:\n"+sinkYAML("audit", rcv.URL(), ""), map[string]string{"ADMIN_TOKEN": token})
	h := n.AdminHandler()

	if code, _ := apiCall(h, "GET", "/v1/sinks", "", ""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, _ := apiCall(h, "GET", "/v1/sinks", "wrong-token-wrong-token", ""); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", code)
	}
	if code, body := apiCall(h, "GET", "/healthz", "", ""); code != http.StatusOK {
		t.Errorf("/healthz needs no token: %d %s", code, body)
	}

	hook := testutil.NewReceiver(t)
	def := `{"name": "hook", "type": "webhook", "url": "` + hook.URL() + `", "bearer_token": "t0ken-in-body"}`
	if code, body := apiCall(h, "POST", "/v1/sinks", token, def); code != http.StatusOK {
		t.Fatalf("define: %d %s", code, body)
	}
	if code, body := apiCall(h, "POST", "/v1/sinks", token, def); code != http.StatusConflict {
		t.Errorf("define twice: %d %s, want 409", code, body)
	}
	if code, body := apiCall(h, "POST", "/v1/sinks", token, `{"name": "x", "type": "webhook", "url": "not a url"}`); code != http.StatusBadRequest || !strings.Contains(body, "url") {
		t.Errorf("bad url: %d %s, want 400 naming the url", code, body)
	}
	if code, body := apiCall(h, "PUT", "/v1/sinks/other", token, def); code != http.StatusBadRequest {
		t.Errorf("path and body disagree: %d %s, want 400", code, body)
	}
	testutil.Eventually(t, waitFor, func() bool { return n.Loop("hook") != nil }, "API-defined sink running")
	code, body := apiCall(h, "GET", "/v1/sinks", token, "")
	if code != http.StatusOK || !strings.Contains(body, `"name":"hook"`) || strings.Contains(body, "t0ken-in-body") {
		t.Errorf("list: %d %s (must list hook without its token)", code, body)
	}
	if code, body := apiCall(h, "PUT", "/v1/config/concurrency", token, "2\n"); code != http.StatusOK {
		t.Errorf("config set: %d %s", code, body)
	}
	if code, body := apiCall(h, "PUT", "/v1/config/concurrency", token, "many"); code != http.StatusBadRequest {
		t.Errorf("config set bad value: %d %s", code, body)
	}
	if code, body := apiCall(h, "GET", "/v1/config", token, ""); code != http.StatusOK || !strings.Contains(body, `"concurrency":{"set":true,"value":"2"}`) {
		t.Errorf("config get: %d %s", code, body)
	}
	if code, body := apiCall(h, "DELETE", "/v1/sinks/hook", token, ""); code != http.StatusOK {
		t.Errorf("delete: %d %s", code, body)
	}
	if code, _ := apiCall(h, "DELETE", "/v1/sinks/hook", token, ""); code != http.StatusNotFound {
		t.Errorf("delete again: %d, want 404", code)
	}
	testutil.Eventually(t, waitFor, func() bool { return n.Loop("hook") == nil }, "deleted sink stopped")
}

func TestAdminAPIIsOffWithoutToken(t *testing.T) {
	n := testutil.StartNode(t, "node_id: no-api\n", nil)
	if code, body := apiCall(n.AdminHandler(), "GET", "/v1/sinks", "anything", ""); code != http.StatusForbidden || !strings.Contains(body, "admin.token") {
		t.Errorf("API without a configured token: %d %s, want 403 saying how to turn it on", code, body)
	}
}

// GET /v1/status is what worker status --json prints: every node, up or
// not, and every sink's state and backlog. It takes the admin token: an
// event-log account token does not open it.
func TestAdminAPIServesStatus(t *testing.T) {
	rcv := testutil.NewReceiver(t)
	const token, acme = "0123456789abcdef-test-token", "acme-account-token-0123456789"
	n := testutil.StartNode(t, "node_id: status-node\nadmin:\n  token: ${ADMIN_TOKEN}\n  account_tokens: {acme: \"${ACME}\"}\nsinks:\n"+sinkYAML("audit", rcv.URL(), ""),
		map[string]string{"ADMIN_TOKEN": token, "ACME": acme})
	h := n.AdminHandler()
	for _, tok := range []string{"", acme} {
		if code, body := apiCall(h, "GET", "/v1/status", tok, ""); code != http.StatusUnauthorized {
			t.Errorf("status with token %q: %d %s, want 401", tok, code, body)
		}
	}
	var report status.Report
	testutil.Eventually(t, waitFor, func() bool {
		code, body := apiCall(h, "GET", "/v1/status", token, "")
		if code != http.StatusOK {
			t.Fatalf("status: %d %s", code, body)
		}
		report = status.Report{}
		if err := json.Unmarshal([]byte(body), &report); err != nil {
			t.Fatalf("status body %s: %v", body, err)
		}
		return len(report.Nodes) == 1
	}, "the node's first heartbeat in the status")
	if nd := report.Nodes[0]; nd.Node != "status-node" || !nd.Up || nd.Worker() != "running" {
		t.Errorf("node %+v: want status-node up and running", nd)
	}
	if len(report.Sinks) != 1 || report.Sinks[0].Sink != "audit" || report.Sinks[0].State != status.StateEnabled {
		t.Errorf("sinks %+v: want audit, enabled", report.Sinks)
	}
}

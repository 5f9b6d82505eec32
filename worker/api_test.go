package worker_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/courierhq/courier/internal/testutil"
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

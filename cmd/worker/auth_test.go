package main

import (
	"strings"
	"testing"

	"github.com/courierhq/courier/internal/testutil"
)

// TestCommandsPresentTheWorkersCredentials: against a node whose outbox
// requires auth (over TLS), the worker commands connect with the
// credentials of their file, and fail without them.
func TestCommandsPresentTheWorkersCredentials(t *testing.T) {
	files := testutil.NewTLSFiles(t)
	auth := "outbox:\n  auth: {user: courier, password: worker-password-0123}\n  tls: {cert_file: " + files.Cert + ", key_file: " + files.Key + ", ca_file: " + files.CA + "}\n"
	n := testutil.StartNode(t, "node_id: auth-node\n"+auth, nil)
	cliAuth := "outbox:\n  url: \"" + n.URL() + "\"\n  auth: {user: courier, password: worker-password-0123}\n  tls: {ca_file: " + files.CA + "}\n"
	if r := cli(t, "status", "--config", writeFile(t, "node_id: cli\n"+cliAuth)); r.err != nil || !strings.Contains(r.stdout, "auth-node") {
		t.Errorf("status with the credentials: %v\n%s", r.err, r.stdout)
	}
	wrong := strings.Replace(cliAuth, "worker-password-0123", "wrong-password-0123", 1)
	r := cli(t, "status", "--config", writeFile(t, "node_id: cli\n"+wrong))
	if r.err == nil || !strings.Contains(r.err.Error(), "uthorization") {
		t.Errorf("status with a wrong password: %v, want an authorization error", r.err)
	}
	if strings.Contains(r.err.Error(), "wrong-password") {
		t.Errorf("the error shows the password: %v", r.err)
	}
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
)

// TestEmitPresentsCredentials: an outbox with auth refuses emit without
// credentials (exit 1, nothing stored), takes the event with --creds or
// $COURIER_CREDS, and --tls-ca verifies its TLS certificate.
func TestEmitPresentsCredentials(t *testing.T) {
	files := testutil.NewTLSFiles(t)
	worker := outbox.Credentials{User: "courier", Password: "worker-password-0123", CAFile: files.CA}
	users := []outbox.AuthUser{{User: worker.User, Password: worker.Password}, {User: "app", Password: "producer-password-0123", Producer: true}}
	srv, js := testutil.StartAuthOutbox(t, users, worker, outbox.TLSFiles{CertFile: files.Cert, KeyFile: files.Key})
	creds := filepath.Join(t.TempDir(), "producer.creds")
	if err := os.WriteFile(creds, []byte("app:producer-password-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url := srv.ClientURL()
	if r := emit(t, "", "--url", url, "--tls-ca", files.CA, "--no-spool", "--timeout", "3s", "--id", "no-creds", "--type", "T"); r.code != 1 || !strings.Contains(r.stderr, "uthorization") {
		t.Errorf("without credentials: %v, want exit 1 with an authorization error", r)
	}
	if r := emit(t, "", "--url", url, "--creds", creds, "--no-spool", "--timeout", "3s", "--id", "no-ca", "--type", "T"); r.code != 1 {
		t.Errorf("without the CA: %v, want exit 1", r)
	}
	if r := emit(t, "", "--url", url, "--creds", creds, "--tls-ca", files.CA, "--id", "with-creds", "--type", "T"); r.code != 0 {
		t.Errorf("with --creds: %v", r)
	}
	t.Setenv("COURIER_CREDS", creds)
	t.Setenv("COURIER_TLS_CA", files.CA)
	if r := emit(t, "", "--url", url, "--id", "from-env", "--type", "T"); r.code != 0 {
		t.Errorf("with $COURIER_CREDS: %v", r)
	}
	if r := emit(t, "", "--url", url, "--creds", filepath.Join(t.TempDir(), "missing"), "--type", "T"); r.code != 2 {
		t.Errorf("a missing credentials file: %v, want exit 2", r)
	}
	if got := storedIDs(t, js); strings.Join(got, ",") != "with-creds,from-env" {
		t.Errorf("stored %v, want with-creds and from-env only", got)
	}
}
